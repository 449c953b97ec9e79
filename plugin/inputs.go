package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// argoRequest is the body Argo CD's plugin generator POSTs. Top-level fields Argo CD may add later are
// tolerated; the parameters, which users write, are checked strictly.
type argoRequest struct {
	ApplicationSetName string `json:"applicationSetName"`
	Input              struct {
		Parameters json.RawMessage `json:"parameters"`
	} `json:"input"`
}

// parameters are the inputs users put in the generator's input.parameters.
type parameters struct {
	Workloads         []string        `json:"workloads"`
	WorkloadSelector  json.RawMessage `json:"workloadSelector"`
	WorkloadNamespace string          `json:"workloadNamespace"`
	ClusterSelector   json.RawMessage `json:"clusterSelector"`
	Registration      string          `json:"registration"`
	IncludeUnready    bool            `json:"includeUnready"`
}

// parseArgoRequest reads and checks a plugin generator request.
func parseArgoRequest(body io.Reader) (string, fleet.Filter, error) {
	var req argoRequest
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return "", fleet.Filter{}, newError(kindTooLarge, "request body is larger than 1 MiB")
		}
		return "", fleet.Filter{}, newError(kindBadRequest, "request body is not a plugin generator request: "+jsonProblem(err, ""))
	}
	var p parameters
	if raw := bytes.TrimSpace(req.Input.Parameters); len(raw) > 0 && string(raw) != "null" {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return "", fleet.Filter{}, newError(kindBadRequest, jsonProblem(err, "input.parameters"))
		}
	}
	f, err := p.filter("input.parameters.")
	return req.ApplicationSetName, f, err
}

func (p parameters) filter(prefix string) (fleet.Filter, error) {
	f := fleet.Filter{Workloads: p.Workloads, WorkloadNamespace: p.WorkloadNamespace, Registration: p.Registration, IncludeUnready: p.IncludeUnready}
	for i, name := range p.Workloads {
		if strings.TrimSpace(name) == "" {
			return f, newError(kindBadRequest, fmt.Sprintf("%sworkloads[%d]: empty name", prefix, i))
		}
	}
	var err error
	if f.WorkloadSelector, err = selectorFrom(p.WorkloadSelector, prefix+"workloadSelector"); err != nil {
		return f, err
	}
	if f.ClusterSelector, err = selectorFrom(p.ClusterSelector, prefix+"clusterSelector"); err != nil {
		return f, err
	}
	return f, nil
}

// selectorFrom accepts a Kubernetes label selector object ({"matchLabels": ...}) or its string form
// ("env=prod,tier in (a,b)").
func selectorFrom(raw json.RawMessage, field string) (labels.Selector, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, newError(kindBadRequest, field+": not a string")
		}
		return parseSelector(s, field)
	}
	var ls metav1.LabelSelector
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ls); err != nil {
		return nil, newError(kindBadRequest, jsonProblem(err, field))
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		return nil, newError(kindBadRequest, fmt.Sprintf("%s: %s", field, err))
	}
	return sel, nil
}

func parseSelector(s, field string) (labels.Selector, error) {
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, newError(kindBadRequest, fmt.Sprintf("%s: %s", field, err))
	}
	return sel, nil
}

// jsonProblem names the field a JSON decoding error is about.
func jsonProblem(err error, field string) string {
	join := func(a, b string) string {
		switch {
		case a == "":
			return b
		case b == "":
			return a
		}
		return a + "." + b
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Sprintf("%s: expected %s, got %s", join(field, typeErr.Field), typeErr.Type.String(), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("%s: invalid JSON at offset %d", orBody(field), syntaxErr.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Sprintf("%s: unknown field %s", orBody(field), strings.TrimPrefix(err.Error(), "json: unknown field "))
	case errors.Is(err, io.EOF):
		return fmt.Sprintf("%s: empty", orBody(field))
	}
	return fmt.Sprintf("%s: %s", orBody(field), err)
}

func orBody(field string) string {
	if field == "" {
		return "body"
	}
	return field
}

// fluxQueryKeys are the query parameters GET /api/v1/flux/inputs accepts.
var fluxQueryKeys = map[string]bool{
	"workloads": true, "workloadSelector": true, "workloadNamespace": true,
	"clusterSelector": true, "registration": true, "includeUnready": true,
}

// ParseFluxQuery is parseFluxQuery for callers outside the server (tests of examples).
func ParseFluxQuery(q url.Values) (fleet.Filter, error) { return parseFluxQuery(q) }

// parseFluxQuery reads the same filters as the Argo CD inputs from query parameters; selectors use the
// string form and workloads is comma separated.
func parseFluxQuery(q url.Values) (fleet.Filter, error) {
	for key := range q {
		if !fluxQueryKeys[key] {
			return fleet.Filter{}, newError(kindBadRequest, fmt.Sprintf("query parameter %q is not known", key))
		}
	}
	f := fleet.Filter{WorkloadNamespace: q.Get("workloadNamespace"), Registration: q.Get("registration")}
	if w := q.Get("workloads"); w != "" {
		for _, name := range strings.Split(w, ",") {
			if name = strings.TrimSpace(name); name == "" {
				return f, newError(kindBadRequest, "workloads: empty name")
			}
			f.Workloads = append(f.Workloads, strings.TrimSpace(name))
		}
	}
	if v := q.Get("includeUnready"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, newError(kindBadRequest, "includeUnready: expected true or false")
		}
		f.IncludeUnready = b
	}
	var err error
	if v := q.Get("workloadSelector"); v != "" {
		if f.WorkloadSelector, err = parseSelector(v, "workloadSelector"); err != nil {
			return f, err
		}
	}
	if v := q.Get("clusterSelector"); v != "" {
		if f.ClusterSelector, err = parseSelector(v, "clusterSelector"); err != nil {
			return f, err
		}
	}
	return f, nil
}
