package plugin

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// staticFleet is a fixed fleet snapshot: the server's input, not a stand-in for the Kubernetes API.
type staticFleet struct {
	synced bool
	snap   *fleet.Snapshot
}

func (f *staticFleet) Synced() bool              { return f.synced }
func (f *staticFleet) Snapshot() *fleet.Snapshot { return f.snap }

func sel(s string) labels.Selector {
	out, err := labels.Parse(s)
	if err != nil {
		panic(err)
	}
	return out
}

func testFleet() *fleet.Snapshot {
	cluster := func(ns, name, reg string, ready bool, l map[string]string) fleet.Cluster {
		return fleet.Cluster{Namespace: ns, Name: name, ArgoCDName: ns + "-" + name, Server: "https://" + name + ":6443",
			Labels: l, KubernetesVersion: "v1.36.3", Ready: ready, Registration: reg}
	}
	return &fleet.Snapshot{
		Clusters: []fleet.Cluster{
			cluster("fleet", "c1", "r1", true, map[string]string{"env": "prod", "region": "eu"}),
			cluster("fleet", "c2", "r1", true, map[string]string{"env": "staging", "region": "us"}),
			cluster("fleet", "c3", "r1", false, map[string]string{"env": "prod", "region": "us"}),
			cluster("other", "c4", "r2", true, map[string]string{"env": "prod", "region": "eu"}),
		},
		Workloads: []fleet.Workload{
			{Name: "web", Namespace: "apps", ClusterSelector: sel("env=prod"), RepoURL: "https://git/web", Path: "deploy", TargetRevision: "main",
				DestinationNamespace: "web",
				Values:               map[string]any{"replicas": 1.0, "image": map[string]any{"repo": "x", "tag": "v1"}},
				Overrides: []fleet.Override{
					{Selector: sel("region=eu"), Values: map[string]any{"image": map[string]any{"tag": "v2"}}},
					{Selector: sel("env=prod"), Values: map[string]any{"replicas": 3.0}},
				}},
			{Name: "api", Namespace: "apps", Labels: map[string]string{"tier": "backend"}, ClusterSelector: labels.Everything(),
				RepoURL: "https://charts", Chart: "api", TargetRevision: "1.2.3", DestinationNamespace: "api"},
			{Name: "monitor", Namespace: "ops", Registration: "r1", ClusterSelector: sel("env=staging"), RepoURL: "https://git/mon", Path: "m",
				TargetRevision: "HEAD", DestinationNamespace: "monitoring"},
			{Name: "nowhere", Namespace: "apps", RepoURL: "https://git/x", Path: "x", TargetRevision: "HEAD", DestinationNamespace: "x"},
		},
	}
}

const token, nextToken = "t0ken-one", "t0ken-two"

type response struct {
	code   int
	header http.Header
	body   map[string]any
	raw    []byte
}

func do(t *testing.T, s *Server, method, path, auth string, body []byte, header map[string]string) response {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	raw := rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ = io.ReadAll(zr)
	}
	out := response{code: rec.Code, header: rec.Header(), raw: raw}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		t.Fatalf("%s %s answered %d with a body that is not a JSON object: %q", method, path, rec.Code, raw)
	}
	return out
}

func argoBody(params string) []byte {
	if params == "" {
		return []byte(`{"applicationSetName":"test","input":{}}`)
	}
	return []byte(`{"applicationSetName":"test","input":{"parameters":` + params + `}}`)
}

// pairNames lists "<workload>@<cluster>" of an Argo CD answer, in order.
func pairNames(t *testing.T, r response) []string {
	t.Helper()
	output, ok := r.body["output"].(map[string]any)
	if !ok {
		t.Fatalf("no output in %s", r.raw)
	}
	params, ok := output["parameters"].([]any)
	if !ok {
		t.Fatalf("output.parameters is not a list (null would read as zero results): %s", r.raw)
	}
	var out []string
	for _, p := range params {
		m := p.(map[string]any)
		out = append(out, m["workload"].(map[string]any)["name"].(string)+"@"+m["cluster"].(map[string]any)["name"].(string))
	}
	return out
}

func TestServer(t *testing.T) {
	ready := NewServer(&staticFleet{synced: true, snap: testFleet()}, StaticTokens(token, nextToken), logr.Discard(), 0)
	unsynced := NewServer(&staticFleet{synced: false, snap: testFleet()}, StaticTokens(token), logr.Discard(), 0)
	bearer := "Bearer " + token
	const execute = "/api/v1/getparams.execute"
	huge := argoBody(`{"registration":"` + strings.Repeat("x", 1<<20) + `"}`)

	cases := []struct {
		name      string
		server    *Server
		method    string
		path      string
		auth      string
		body      []byte
		header    map[string]string
		wantCode  int
		wantError string   // substring of the JSON error
		wantPairs []string // for 200 answers of the Argo CD endpoint
	}{
		{"no token", ready, "POST", execute, "", argoBody(""), nil, 401, "bearer token", nil},
		{"bearer in capitals", ready, "POST", execute, "BEARER " + token, argoBody(`{"workloads":["monitor"]}`), nil, 200, "", []string{"monitor@c2"}},
		{"wrong token", ready, "POST", execute, "Bearer nope", argoBody(""), nil, 401, "bearer token", nil},
		{"empty bearer", ready, "POST", execute, "Bearer ", argoBody(""), nil, 401, "bearer token", nil},
		{"basic auth is not a bearer token", ready, "POST", execute, "Basic " + token, argoBody(""), nil, 401, "bearer token", nil},
		{"second token during rotation", ready, "POST", execute, "Bearer " + nextToken, argoBody(`{"workloads":["web"]}`), nil, 200, "",
			[]string{"web@c1", "web@c3", "web@c4"}},
		{"the scheme is case-insensitive", ready, "POST", execute, "bearer " + token, argoBody(`{"workloads":["web"]}`), nil, 200, "",
			[]string{"web@c1", "web@c3", "web@c4"}},
		{"body is null", ready, "POST", execute, bearer, []byte("null"), nil, 400, "body: expected a JSON object, got null", nil},
		{"body is a list", ready, "POST", execute, bearer, []byte("[]"), nil, 400, "body: expected a JSON object, got a list", nil},
		{"body is a string", ready, "POST", execute, bearer, []byte(`"x"`), nil, 400, "body: expected a JSON object, got a string", nil},
		{"input is not an object", ready, "POST", execute, bearer, []byte(`{"input":[1]}`), nil, 400, "input: expected a JSON object, got a list", nil},
		{"input is null", ready, "POST", execute, bearer, []byte(`{"input":null}`), nil, 400, "input: expected a JSON object, got null", nil},
		{"parameters are a list", ready, "POST", execute, bearer, argoBody(`["web"]`), nil, 400, "input.parameters: expected a JSON object, got a list", nil},
		{"parameters are null", ready, "POST", execute, bearer, argoBody("null"), nil, 400, "input.parameters: expected a JSON object, got null", nil},
		{"a key given twice", ready, "POST", execute, bearer, argoBody(`{"workloads":["web"],"workloads":[]}`), nil, 400, `key "workloads" is given twice`, nil},
		{"a key given twice, once escaped", ready, "POST", execute, bearer, argoBody(`{"workloads":["web"],"work\u006coads":[]}`), nil, 400, "given twice", nil},
		{"the same name in two objects is fine", ready, "POST", execute, bearer, argoBody(`{"clusterSelector":{"matchLabels":{"env":"prod"}},"workloadSelector":{"matchLabels":{"env":"prod"}}}`), nil, 200, "", []string{}},
		{"a selector key given twice", ready, "POST", execute, bearer, argoBody(`{"clusterSelector":{"matchLabels":{"env":"prod"},"matchLabels":{}}}`), nil, 400, "given twice", nil},
		{"input given twice", ready, "POST", execute, bearer, []byte(`{"input":{"parameters":{"workloads":["web"]}},"input":{}}`), nil, 400, "given twice", nil},
		{"a parameter set to null", ready, "POST", execute, bearer, argoBody(`{"workloads":null}`), nil, 400, "input.parameters.workloads: null", nil},
		{"too deep", ready, "POST", execute, bearer, argoBody(`{"clusterSelector":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`), nil, 400, "deeper", nil},
		{"a workload name that no object can have", ready, "POST", execute, bearer, argoBody(`{"workloads":["apps/ web"]}`), nil, 400, "input.parameters.workloads[0]", nil},
		{"a workload namespace that no object can have", ready, "POST", execute, bearer, argoBody(`{"workloadNamespace":"Apps"}`), nil, 400, "workloadNamespace", nil},
		{"a registration that no object can have", ready, "POST", execute, bearer, argoBody(`{"registration":"r 1"}`), nil, 400, "registration", nil},
		{"flux query that does not decode", ready, "GET", "/api/v1/flux/inputs?workloads=web%zz", bearer, nil, nil, 400, "query", nil},
		{"flux query with a semicolon", ready, "GET", "/api/v1/flux/inputs?workloads=web;x", bearer, nil, nil, 400, "query", nil},
		{"a workload with an empty namespace", ready, "POST", execute, bearer, argoBody(`{"workloads":["/web"]}`), nil, 400, "input.parameters.workloads[0]", nil},
		{"caches not synced", unsynced, "POST", execute, bearer, argoBody(""), nil, 503, "not synced", nil},
		{"body is not JSON", ready, "POST", execute, bearer, []byte("{"), nil, 400, "body", nil},
		{"empty body", ready, "POST", execute, bearer, nil, nil, 400, "empty", nil},
		{"typo in a parameter name", ready, "POST", execute, bearer, argoBody(`{"workload":["web"]}`), nil, 400, `input.parameters: unknown field "workload"`, nil},
		{"wrong type", ready, "POST", execute, bearer, argoBody(`{"includeUnready":"yes"}`), nil, 400, "input.parameters.includeUnready", nil},
		{"workloads not a list", ready, "POST", execute, bearer, argoBody(`{"workloads":"web"}`), nil, 400, "input.parameters.workloads", nil},
		{"empty workload name", ready, "POST", execute, bearer, argoBody(`{"workloads":[""]}`), nil, 400, "input.parameters.workloads[0]", nil},
		{"invalid selector operator", ready, "POST", execute, bearer,
			argoBody(`{"clusterSelector":{"matchExpressions":[{"key":"env","operator":"Bogus"}]}}`), nil, 400, "input.parameters.clusterSelector", nil},
		{"unknown selector field", ready, "POST", execute, bearer, argoBody(`{"clusterSelector":{"matchLabel":{"env":"prod"}}}`), nil, 400,
			`input.parameters.clusterSelector: unknown field "matchLabel"`, nil},
		{"invalid selector string", ready, "POST", execute, bearer, argoBody(`{"workloadSelector":"a in (("}`), nil, 400, "input.parameters.workloadSelector", nil},
		{"body over 1 MiB", ready, "POST", execute, bearer, huge, nil, 413, "1 MiB", nil},
		{"no parameters: every registered pair, unready ones too", ready, "POST", execute, bearer, argoBody(""), nil, 200, "",
			[]string{"api@c1", "api@c2", "api@c3", "api@c4", "web@c1", "web@c3", "web@c4", "monitor@c2"}},
		{"empty parameters", ready, "POST", execute, bearer, argoBody("{}"), nil, 200, "",
			[]string{"api@c1", "api@c2", "api@c3", "api@c4", "web@c1", "web@c3", "web@c4", "monitor@c2"}},
		{"one workload", ready, "POST", execute, bearer, argoBody(`{"workloads":["web"]}`), nil, 200, "", []string{"web@c1", "web@c3", "web@c4"}},
		{"one workload by namespace/name", ready, "POST", execute, bearer, argoBody(`{"workloads":["apps/web"]}`), nil, 200, "", []string{"web@c1", "web@c3", "web@c4"}},
		{"includeUnready is accepted and changes nothing", ready, "POST", execute, bearer, argoBody(`{"workloads":["web"],"includeUnready":true}`), nil, 200, "",
			[]string{"web@c1", "web@c3", "web@c4"}},
		{"ready clusters only", ready, "POST", execute, bearer, argoBody(`{"workloads":["web"],"readyOnly":true}`), nil, 200, "",
			[]string{"web@c1", "web@c4"}},
		{"by registration", ready, "POST", execute, bearer, argoBody(`{"registration":"r2"}`), nil, 200, "", []string{"api@c4", "web@c4"}},
		{"flux readyOnly not a boolean", ready, "GET", "/api/v1/flux/inputs?readyOnly=maybe", bearer, nil, nil, 400, "readyOnly", nil},
		{"flux parameter given twice", ready, "GET", "/api/v1/flux/inputs?workloads=web&workloads=api", bearer, nil, nil, 400, "given 2 times", nil},
		{"by workload namespace", ready, "POST", execute, bearer, argoBody(`{"workloadNamespace":"ops"}`), nil, 200, "", []string{"monitor@c2"}},
		{"by workload selector object", ready, "POST", execute, bearer, argoBody(`{"workloadSelector":{"matchLabels":{"tier":"backend"}}}`), nil, 200, "",
			[]string{"api@c1", "api@c2", "api@c3", "api@c4"}},
		{"cluster selector string", ready, "POST", execute, bearer, argoBody(`{"clusterSelector":"region=eu","workloads":["api"]}`), nil, 200, "",
			[]string{"api@c1", "api@c4"}},
		{"matching nothing is an empty list", ready, "POST", execute, bearer, argoBody(`{"clusterSelector":{"matchLabels":{"env":"none"}}}`), nil, 200, "", []string{}},
		{"GET on the Argo CD endpoint", ready, "GET", execute, bearer, nil, nil, 405, "method not allowed", nil},
		{"unknown path", ready, "GET", "/api/v1/nope", bearer, nil, nil, 404, "no such endpoint", nil},
		{"flux without token", ready, "GET", "/api/v1/flux/inputs", "", nil, nil, 401, "bearer token", nil},
		{"flux unknown query parameter", ready, "GET", "/api/v1/flux/inputs?cluster=c1", bearer, nil, nil, 400, `"cluster" is not known`, nil},
		{"flux bad boolean", ready, "GET", "/api/v1/flux/inputs?includeUnready=maybe", bearer, nil, nil, 400, "includeUnready", nil},
		{"flux bad selector", ready, "GET", "/api/v1/flux/inputs?clusterSelector=a%20in%20((", bearer, nil, nil, 400, "clusterSelector", nil},
		{"flux before sync", unsynced, "GET", "/api/v1/flux/inputs", bearer, nil, nil, 503, "not synced", nil},
		{"readyz before sync", unsynced, "GET", "/readyz", "", nil, nil, 503, "not synced", nil},
		{"readyz after sync", ready, "GET", "/readyz", "", nil, nil, 200, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.server, tc.method, tc.path, tc.auth, tc.body, tc.header)
			if r.code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", r.code, tc.wantCode, r.raw)
			}
			if challenge := r.header.Get("WWW-Authenticate"); (r.code == 401) != strings.HasPrefix(challenge, "Bearer ") {
				t.Fatalf("status %d with WWW-Authenticate %q", r.code, challenge)
			}
			if tc.wantError != "" {
				msg, _ := r.body["error"].(string)
				if !strings.Contains(msg, tc.wantError) {
					t.Fatalf("error %q does not contain %q", msg, tc.wantError)
				}
				return
			}
			if tc.wantPairs != nil {
				if got := pairNames(t, r); fmt.Sprint(got) != fmt.Sprint(tc.wantPairs) {
					t.Fatalf("pairs %v, want %v", got, tc.wantPairs)
				}
			}
		})
	}
}

// Overrides deep-merge in order: region=eu sets image.tag, env=prod then sets replicas; keys an override
// does not name survive; valuesYAML is the same object as YAML.
func TestOverridesDeepMergeInOrder(t *testing.T) {
	s := NewServer(&staticFleet{synced: true, snap: testFleet()}, StaticTokens(token), logr.Discard(), 0)
	r := do(t, s, "POST", "/api/v1/getparams.execute", "Bearer "+token, argoBody(`{"workloads":["web"]}`), nil)
	want := map[string]string{
		"c1": `{"image":{"repo":"x","tag":"v2"},"replicas":3}`,
		"c3": `{"image":{"repo":"x","tag":"v1"},"replicas":3}`,
		"c4": `{"image":{"repo":"x","tag":"v2"},"replicas":3}`,
	}
	params := r.body["output"].(map[string]any)["parameters"].([]any)
	if len(params) != 3 {
		t.Fatalf("%d pairs", len(params))
	}
	for _, p := range params {
		m := p.(map[string]any)
		cluster := m["cluster"].(map[string]any)["name"].(string)
		w := m["workload"].(map[string]any)
		got, _ := json.Marshal(w["values"])
		if string(got) != want[cluster] {
			t.Errorf("%s: values %s, want %s", cluster, got, want[cluster])
		}
		var fromYAML map[string]any
		if err := yaml.Unmarshal([]byte(w["valuesYAML"].(string)), &fromYAML); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(fromYAML)
		if string(again) != want[cluster] {
			t.Errorf("%s: valuesYAML %s", cluster, w["valuesYAML"])
		}
		if m["cluster"].(map[string]any)["argocdName"] != "fleet-"+cluster && cluster != "c4" {
			t.Errorf("argocdName = %v", m["cluster"].(map[string]any)["argocdName"])
		}
	}
	// The workload's own values are untouched by the merges.
	if testFleet().Workloads[0].Values["image"].(map[string]any)["tag"] != "v1" {
		t.Fatal("merge mutated the workload")
	}
}

func TestAnswersAreStableAndGzipped(t *testing.T) {
	s := NewServer(&staticFleet{synced: true, snap: testFleet()}, StaticTokens(token), logr.Discard(), 0)
	a := do(t, s, "POST", "/api/v1/getparams.execute", "Bearer "+token, argoBody(""), nil)
	b := do(t, s, "POST", "/api/v1/getparams.execute", "Bearer "+token, argoBody(""), map[string]string{"Accept-Encoding": "gzip"})
	if b.header.Get("Content-Encoding") != "gzip" {
		t.Fatal("gzip was accepted but not used")
	}
	if !bytes.Equal(a.raw, b.raw) {
		t.Fatal("two calls on one fleet answered differently")
	}
	seen := map[string]bool{}
	for _, p := range a.body["output"].(map[string]any)["parameters"].([]any) {
		name := p.(map[string]any)["name"].(string)
		if seen[name] || len(name) > 63 || strings.ToLower(name) != name {
			t.Fatalf("pair name %q is not a unique DNS label", name)
		}
		seen[name] = true
	}
}

func TestFluxInputs(t *testing.T) {
	s := NewServer(&staticFleet{synced: true, snap: testFleet()}, StaticTokens(token), logr.Discard(), 0)
	r := do(t, s, "GET", "/api/v1/flux/inputs?workloads=web,api&clusterSelector=region%3Deu", "Bearer "+token, nil, nil)
	if r.code != 200 {
		t.Fatalf("status %d: %s", r.code, r.raw)
	}
	inputs := r.body["inputs"].([]any)
	if len(inputs) != 4 {
		t.Fatalf("%d inputs: %s", len(inputs), r.raw)
	}
	ids := map[string]bool{}
	for _, in := range inputs {
		m := in.(map[string]any)
		id := m["id"].(string)
		if ids[id] || id != m["name"] {
			t.Fatalf("id %q is not unique or not the pair name", id)
		}
		ids[id] = true
	}

	// A fleet whose answer exceeds Flux Operator's 900 KiB is refused, never truncated.
	big := testFleet()
	for i := 0; i < 4000; i++ {
		big.Clusters = append(big.Clusters, fleet.Cluster{Namespace: "big", Name: fmt.Sprintf("cluster-%04d", i), Ready: true,
			Labels: map[string]string{"env": "prod"}, Server: "https://x:6443"})
	}
	s = NewServer(&staticFleet{synced: true, snap: big}, StaticTokens(token), logr.Discard(), 0)
	r = do(t, s, "GET", "/api/v1/flux/inputs?workloads=web", "Bearer "+token, nil, nil)
	if r.code != http.StatusUnprocessableEntity || !strings.Contains(r.body["error"].(string), "900 KiB") {
		t.Fatalf("status %d: %.200s", r.code, r.raw)
	}
}

// Tokens come from a mounted Secret directory and follow its rotation without a restart.
func TestTokensReloadFromDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, value string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("token", "old")
	tokens, err := NewTokens(TokenSource{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !valid(tokens, "old") || valid(tokens, "new") || valid(tokens, "") {
		t.Fatal("initial tokens wrong")
	}
	write("token.next", "new")
	if !valid(tokens, "old") || !valid(tokens, "new") {
		t.Fatal("both tokens must be valid during a rotation")
	}
	if err := os.Remove(filepath.Join(dir, "token")); err != nil {
		t.Fatal(err)
	}
	if valid(tokens, "old") || !valid(tokens, "new") {
		t.Fatal("the retired token still works")
	}
	if _, err := NewTokens(TokenSource{Dir: t.TempDir(), ReloadEvery: time.Second}); err == nil {
		t.Fatal("an empty token directory must be refused at start")
	}
}

func valid(t *Tokens, presented string) bool { return t.scopeOf(presented) != nil }
