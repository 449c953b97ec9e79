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

	"k8s.io/apimachinery/pkg/util/validation"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// argoRequest is the body Argo CD's plugin generator POSTs. Top-level fields Argo CD may add later are
// tolerated; the parameters, which users write, are checked strictly.
type argoRequest struct {
	ApplicationSetName string          `json:"applicationSetName"`
	Input              json.RawMessage `json:"input"`
}

// parameters are the inputs users put in the generator's input.parameters.
type parameters struct {
	Workloads         []string        `json:"workloads"`
	WorkloadSelector  json.RawMessage `json:"workloadSelector"`
	WorkloadNamespace string          `json:"workloadNamespace"`
	ClusterSelector   json.RawMessage `json:"clusterSelector"`
	Registration      string          `json:"registration"`
	ReadyOnly         bool            `json:"readyOnly"`
	// IncludeUnready is accepted for old ApplicationSets; unready clusters are always included now
	// unless readyOnly is set.
	IncludeUnready bool `json:"includeUnready"`
}

// parseArgoRequest reads and checks a plugin generator request: a JSON object whose input, when
// present, is an object whose parameters, when present, are an object of known fields.
func parseArgoRequest(body io.Reader) (string, query, error) {
	raw, err := io.ReadAll(body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return "", query{}, newError(kindTooLarge, "request body is larger than 1 MiB")
		}
		return "", query{}, newError(kindBadRequest, "request body could not be read")
	}
	if err := requireObject(raw, "body"); err != nil {
		return "", query{}, err
	}
	if err := rejectDuplicateKeys(raw); err != nil {
		return "", query{}, err
	}
	var req argoRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return "", query{}, newError(kindBadRequest, "request body is not a plugin generator request: "+jsonProblem(err, ""))
	}
	var input struct {
		Parameters json.RawMessage `json:"parameters"`
	}
	if len(req.Input) > 0 {
		if err := requireObject(req.Input, "input"); err != nil {
			return "", query{}, err
		}
		if err := json.Unmarshal(req.Input, &input); err != nil {
			return "", query{}, newError(kindBadRequest, jsonProblem(err, "input"))
		}
	}
	var p parameters
	if len(input.Parameters) > 0 {
		if err := requireObject(input.Parameters, "input.parameters"); err != nil {
			return "", query{}, err
		}
		if err := rejectNullFields(input.Parameters, "input.parameters"); err != nil {
			return "", query{}, err
		}
		dec := json.NewDecoder(bytes.NewReader(input.Parameters))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return "", query{}, newError(kindBadRequest, jsonProblem(err, "input.parameters"))
		}
	}
	q, err := p.query("input.parameters.")
	return req.ApplicationSetName, q, err
}

// requireObject refuses JSON that is not an object (null, a list, a string, nothing): decoding such a
// body into a struct would succeed and read as "no filter", the widest answer.
func requireObject(raw json.RawMessage, field string) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return newError(kindBadRequest, field+": empty")
	}
	if raw[0] != '{' {
		kind := "a JSON value"
		switch raw[0] {
		case 'n':
			kind = "null"
		case '[':
			kind = "a list"
		case '"':
			kind = "a string"
		}
		return newError(kindBadRequest, fmt.Sprintf("%s: expected a JSON object, got %s", field, kind))
	}
	return nil
}

// rejectDuplicateKeys refuses a key given twice in any object of a JSON document: encoding/json keeps the
// last, so {"workloads":["web"],"workloads":[]} would silently read as no filter. Documents nested
// deeper than maxJSONDepth are refused too (nothing a plugin request holds is that deep). It scans the
// bytes once and allocates nothing for documents without escaped keys: it runs on every request.
func rejectDuplicateKeys(raw []byte) error {
	const maxJSONDepth = 32
	if !json.Valid(raw) {
		var v any
		return newError(kindBadRequest, "body: "+jsonProblem(json.Unmarshal(raw, &v), ""))
	}
	type frame struct {
		object, expectKey bool
		firstKey          int // the frame's keys are keys[firstKey:]
	}
	var framesBuf [maxJSONDepth + 1]frame
	frames := framesBuf[:0]
	var keysBuf [32][]byte
	keys := keysBuf[:0]
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '{', '[':
			if len(frames) == maxJSONDepth {
				return newError(kindBadRequest, fmt.Sprintf("body: nested deeper than %d levels", maxJSONDepth))
			}
			frames = append(frames, frame{object: c == '{', expectKey: c == '{', firstKey: len(keys)})
		case '}', ']':
			keys = keys[:frames[len(frames)-1].firstKey]
			frames = frames[:len(frames)-1]
		case ',':
			if top := &frames[len(frames)-1]; top.object {
				top.expectKey = true
			}
		case '"':
			end := i + 1
			for raw[end] != '"' {
				if raw[end] == '\\' {
					end++
				}
				end++
			}
			if n := len(frames); n > 0 && frames[n-1].object && frames[n-1].expectKey {
				key := raw[i+1 : end]
				if bytes.IndexByte(key, '\\') >= 0 {
					var unescaped string
					_ = json.Unmarshal(raw[i:end+1], &unescaped) // valid JSON: it decodes
					key = []byte(unescaped)
				}
				for _, k := range keys[frames[n-1].firstKey:] {
					if bytes.Equal(k, key) {
						return newError(kindBadRequest, fmt.Sprintf("body: key %q is given twice in one object", key))
					}
				}
				keys = append(keys, key)
				frames[n-1].expectKey = false
			}
			i = end
		}
	}
	return nil
}

// rejectNullFields refuses a parameter set to null: it would read as the parameter's absence, and for
// a filter that is the widest answer.
func rejectNullFields(raw json.RawMessage, field string) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return newError(kindBadRequest, jsonProblem(err, field))
	}
	for key, v := range fields {
		if string(bytes.TrimSpace(v)) == "null" {
			return newError(kindBadRequest, fmt.Sprintf("%s.%s: null; leave the parameter out instead", field, key))
		}
	}
	return nil
}

func (p parameters) query(prefix string) (query, error) {
	q := query{workloadNamespace: p.WorkloadNamespace, registration: p.Registration, readyOnly: p.ReadyOnly}
	if err := checkNames(q.workloadNamespace, q.registration, prefix); err != nil {
		return q, err
	}
	for i, name := range p.Workloads {
		ref, err := parseWorkloadRef(name)
		if err != nil {
			return q, newError(kindBadRequest, fmt.Sprintf("%sworkloads[%d]: %s", prefix, i, err))
		}
		q.workloads = append(q.workloads, ref)
	}
	var err error
	if q.workloadSelector, err = selectorFrom(p.WorkloadSelector, prefix+"workloadSelector"); err != nil {
		return q, err
	}
	if q.clusterSelector, err = selectorFrom(p.ClusterSelector, prefix+"clusterSelector"); err != nil {
		return q, err
	}
	return q, nil
}

// checkNames refuses a workloadNamespace or registration that no object can have: it would match
// nothing, and an empty answer makes Argo CD delete Applications.
func checkNames(workloadNamespace, registration, prefix string) error {
	if workloadNamespace != "" {
		if errs := validation.IsDNS1123Label(workloadNamespace); len(errs) > 0 {
			return newError(kindBadRequest, fmt.Sprintf("%sworkloadNamespace %q: %s", prefix, workloadNamespace, strings.Join(errs, "; ")))
		}
	}
	if registration != "" {
		if errs := validation.IsDNS1123Subdomain(registration); len(errs) > 0 {
			return newError(kindBadRequest, fmt.Sprintf("%sregistration %q: %s", prefix, registration, strings.Join(errs, "; ")))
		}
	}
	return nil
}

// parseWorkloadRef reads "name" or "namespace/name".
func parseWorkloadRef(s string) (workloadRef, error) {
	s = strings.TrimSpace(s)
	ns, name, qualified := strings.Cut(s, "/")
	if !qualified {
		ns, name = "", s
	}
	switch {
	case name == "":
		return workloadRef{}, fmt.Errorf("empty name")
	case qualified && ns == "":
		return workloadRef{}, fmt.Errorf("%q has an empty namespace", s)
	case strings.Contains(name, "/"):
		return workloadRef{}, fmt.Errorf("%q: expected name or namespace/name", s)
	}
	if ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return workloadRef{}, fmt.Errorf("namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return workloadRef{}, fmt.Errorf("name %q: %s", name, strings.Join(errs, "; "))
	}
	return workloadRef{namespace: ns, name: name}, nil
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
	"clusterSelector": true, "registration": true, "readyOnly": true, "includeUnready": true,
}

// ParseFluxQuery checks a Flux query as the server does (tests of examples).
func ParseFluxQuery(rawQuery string) error {
	_, err := parseFluxRawQuery(rawQuery)
	return err
}

// parseFluxRawQuery parses a query string strictly: url.URL.Query drops what it cannot decode, and a
// dropped filter widens the answer.
func parseFluxRawQuery(rawQuery string) (query, error) {
	values, err := url.ParseQuery(rawQuery)
	if err != nil {
		return query{}, newError(kindBadRequest, "query: "+err.Error())
	}
	return parseFluxQuery(values)
}

// parseFluxQuery reads the same filters as the Argo CD inputs from query parameters; selectors use the
// string form and workloads is comma separated. A parameter given twice is an error, not a guess.
func parseFluxQuery(values url.Values) (query, error) {
	for key, vs := range values {
		if !fluxQueryKeys[key] {
			return query{}, newError(kindBadRequest, fmt.Sprintf("query parameter %q is not known", key))
		}
		if len(vs) > 1 {
			return query{}, newError(kindBadRequest, fmt.Sprintf("query parameter %q is given %d times", key, len(vs)))
		}
	}
	q := query{workloadNamespace: values.Get("workloadNamespace"), registration: values.Get("registration")}
	if err := checkNames(q.workloadNamespace, q.registration, ""); err != nil {
		return q, err
	}
	if w := values.Get("workloads"); w != "" {
		for i, name := range strings.Split(w, ",") {
			ref, err := parseWorkloadRef(name)
			if err != nil {
				return q, newError(kindBadRequest, fmt.Sprintf("workloads[%d]: %s", i, err))
			}
			q.workloads = append(q.workloads, ref)
		}
	}
	for key, dst := range map[string]*bool{"readyOnly": &q.readyOnly, "includeUnready": new(bool)} {
		if v := values.Get(key); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return q, newError(kindBadRequest, key+": expected true or false")
			}
			*dst = b
		}
	}
	var err error
	if v := values.Get("workloadSelector"); v != "" {
		if q.workloadSelector, err = parseSelector(v, "workloadSelector"); err != nil {
			return q, err
		}
	}
	if v := values.Get("clusterSelector"); v != "" {
		if q.clusterSelector, err = parseSelector(v, "clusterSelector"); err != nil {
			return q, err
		}
	}
	return q, nil
}
