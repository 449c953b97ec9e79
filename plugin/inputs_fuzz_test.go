package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"testing"
)

// FuzzParseArgoRequest: any body either parses or is a classified 4xx error; one that parses is a JSON
// object (never null, a list or a scalar read as "no filter"), and never panics.
func FuzzParseArgoRequest(f *testing.F) {
	for _, seed := range []string{
		``, `null`, `[]`, `"x"`, `{}`, `{"input":{}}`, `{"input":null}`, `{"input":{"parameters":null}}`,
		`{"applicationSetName":"a","input":{"parameters":{"workloads":["web","team-a/api"],"readyOnly":true}}}`,
		`{"input":{"parameters":{"clusterSelector":{"matchExpressions":[{"key":"env","operator":"In","values":["a"]}]}}}}`,
		`{"input":{"parameters":{"workloadSelector":"tier in (a,b),!x"}}}`, `{"input":{"parameters":{"workloads":["/"]}}}`,
		`{"input":{"parameters":{"unknown":1}}}`, `{"input":[]}`, ` {"input":{"parameters":{}}} `,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, q, err := parseArgoRequest(bytes.NewReader(body))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || status(err) < 400 || status(err) >= 500 {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) != nil || obj == nil {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		for _, ref := range q.workloads {
			if ref.name == "" {
				t.Fatalf("accepted an empty workload name: %q", body)
			}
		}
	})
}

// FuzzParseFluxQuery: any query either parses or is a 400, and never panics.
func FuzzParseFluxQuery(f *testing.F) {
	for _, seed := range []string{
		``, `workloads=web,api`, `workloads=team-a/web`, `workloads=,`, `readyOnly=true&includeUnready=false`,
		`clusterSelector=env%3Dprod`, `clusterSelector=a%20in%20((`, `workloadNamespace=x&workloadNamespace=y`, `nope=1`, `%zz`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		values, err := url.ParseQuery(raw)
		if err != nil {
			return // Flux Operator's URL would not carry it
		}
		if _, err := parseFluxQuery(values); err != nil && status(err) != 400 {
			t.Fatalf("status %d for %q: %v", status(err), raw, err)
		}
	})
}
