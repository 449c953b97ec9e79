package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// tenantFleet has two tenants with a Workload of the same name each, clusters in each tenant's
// Registration, and a cluster both Registrations register.
func tenantFleet() *fleet.Snapshot {
	cluster := func(ns, name, reg string, l map[string]string) fleet.Cluster {
		return fleet.Cluster{Namespace: ns, Name: name, ArgoCDName: reg + "." + name, Server: "https://" + name + ":6443",
			Labels: l, Ready: true, Registration: reg}
	}
	workload := func(ns, name, repo string) fleet.Workload {
		return fleet.Workload{Namespace: ns, Name: name, ClusterSelector: labels.Everything(), RepoURL: repo, Path: "deploy",
			TargetRevision: "main", DestinationNamespace: name, Values: map[string]any{"owner": ns}}
	}
	return &fleet.Snapshot{
		Clusters: []fleet.Cluster{
			cluster("fleet-a", "a1", "reg-a", map[string]string{"team": "a", "env": "prod"}),
			cluster("fleet-a", "a2", "reg-a", map[string]string{"team": "a", "env": "staging"}),
			cluster("fleet-b", "b1", "reg-b", map[string]string{"team": "b", "env": "prod"}),
			cluster("shared", "s1", "reg-a", map[string]string{"env": "prod"}),
			cluster("shared", "s1", "reg-b", map[string]string{"env": "prod"}),
		},
		Workloads: []fleet.Workload{
			workload("team-a", "web", "https://git/a/web"),
			workload("team-a", "api", "https://git/a/api"),
			workload("team-b", "web", "https://git/b/web"),
			workload("team-b2", "web", "https://git/b2/web"),
		},
	}
}

// tenantServer serves tenantFleet with an admin token, team-a's (staging clusters excluded by its
// cluster selector) and team-b's (two namespaces), from a mounted token directory and tenants file.
func tenantServer(t *testing.T) *Server {
	t.Helper()
	dir := t.TempDir()
	for name, tok := range map[string]string{"token": "admin-tok", "team-a": "a-tok", "team-b": "b-tok", "team-b.next": "b-next"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(tenants, []byte(`tenants:
- name: team-a
  workloadNamespaces: [team-a]
  registrations: [reg-a]
  clusterSelector: {matchExpressions: [{key: env, operator: NotIn, values: [staging]}]}
- name: team-b
  workloadNamespaces: [team-b, team-b2]
  registrations: [reg-b]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := NewTokens(TokenSource{Dir: dir, TenantsFile: tenants, ReloadEvery: 0})
	if err != nil {
		t.Fatal(err)
	}
	return NewServer(&staticFleet{synced: true, snap: tenantFleet()}, tokens, logr.Discard(), 0)
}

// pairDetails lists "<workload namespace>/<workload>@<cluster registration name>" of an answer.
func pairDetails(t *testing.T, r response, flux bool) []string {
	t.Helper()
	var params []any
	if flux {
		params, _ = r.body["inputs"].([]any)
	} else if output, ok := r.body["output"].(map[string]any); ok {
		params, _ = output["parameters"].([]any)
	}
	if params == nil {
		t.Fatalf("no pairs in %s", r.raw)
	}
	var out []string
	for _, p := range params {
		m := p.(map[string]any)
		w, c := m["workload"].(map[string]any), m["cluster"].(map[string]any)
		out = append(out, fmt.Sprintf("%s/%s@%s", w["namespace"], w["name"], c["argocdName"]))
	}
	return out
}

func TestTenantScopes(t *testing.T) {
	s := tenantServer(t)
	const execute = "/api/v1/getparams.execute"
	cases := []struct {
		name, token, params string
		wantCode            int
		wantError           string
		wantPairs           []string
	}{
		{"a: everything it may read", "a-tok", "", 200, "",
			[]string{"team-a/api@reg-a.a1", "team-a/api@reg-a.s1", "team-a/web@reg-a.a1", "team-a/web@reg-a.s1"}},
		{"a: a bare name resolves in its own namespace", "a-tok", `{"workloads":["web"]}`, 200, "",
			[]string{"team-a/web@reg-a.a1", "team-a/web@reg-a.s1"}},
		{"a: another tenant's namespace", "a-tok", `{"workloadNamespace":"team-b"}`, 403, "workloadNamespace team-b is outside the token's scope, tenant team-a", nil},
		{"a: another tenant's Workload by namespace/name", "a-tok", `{"workloads":["team-b/web"]}`, 403, "workload team-b/web is outside", nil},
		{"a: another tenant's Registration", "a-tok", `{"registration":"reg-b"}`, 403, "registration reg-b is outside", nil},
		{"a: a selector cannot widen the scope", "a-tok", `{"clusterSelector":"env in (prod,staging)"}`, 200, "",
			[]string{"team-a/api@reg-a.a1", "team-a/api@reg-a.s1", "team-a/web@reg-a.a1", "team-a/web@reg-a.s1"}},
		{"b: a name in two of its namespaces is ambiguous", "b-tok", `{"workloads":["web"]}`, 400, "workload web is in namespaces team-b, team-b2", nil},
		{"b: disambiguated by workloadNamespace", "b-tok", `{"workloads":["web"],"workloadNamespace":"team-b2"}`, 200, "",
			[]string{"team-b2/web@reg-b.b1", "team-b2/web@reg-b.s1"}},
		{"b: disambiguated by namespace/name, with its rotated token", "b-next", `{"workloads":["team-b/web"]}`, 200, "",
			[]string{"team-b/web@reg-b.b1", "team-b/web@reg-b.s1"}},
		{"b: a namespace/name outside workloadNamespace", "b-tok", `{"workloads":["team-b/web"],"workloadNamespace":"team-b2"}`, 400, "not in workloadNamespace", nil},
		{"admin: a name in three namespaces is ambiguous", "admin-tok", `{"workloads":["web"]}`, 400, "team-a, team-b, team-b2", nil},
		{"admin: reads every tenant", "admin-tok", `{"workloads":["api","team-b/web"]}`, 200, "",
			[]string{"team-a/api@reg-a.a1", "team-a/api@reg-a.a2", "team-a/api@reg-b.b1", "team-a/api@reg-a.s1", "team-b/web@reg-a.a1", "team-b/web@reg-a.a2", "team-b/web@reg-b.b1", "team-b/web@reg-a.s1"}},
	}
	for _, tc := range cases {
		for _, flux := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/flux=%t", tc.name, flux), func(t *testing.T) {
				var r response
				if flux {
					r = do(t, s, "GET", "/api/v1/flux/inputs?"+fluxQueryOf(t, tc.params), "Bearer "+tc.token, nil, nil)
				} else {
					r = do(t, s, "POST", execute, "Bearer "+tc.token, argoBody(tc.params), nil)
				}
				if r.code != tc.wantCode {
					t.Fatalf("status %d, want %d: %s", r.code, tc.wantCode, r.raw)
				}
				if tc.wantError != "" {
					if msg, _ := r.body["error"].(string); !strings.Contains(msg, tc.wantError) {
						t.Fatalf("error %q does not contain %q", msg, tc.wantError)
					}
					return
				}
				if got := pairDetails(t, r, flux); fmt.Sprint(got) != fmt.Sprint(tc.wantPairs) {
					t.Fatalf("pairs %v, want %v", got, tc.wantPairs)
				}
			})
		}
	}
}

// Whatever a tenant's request says, no pair outside its scope comes back: every combination of the
// filters, with names and namespaces of both tenants, is either refused or inside the scope.
func TestTenantNeverReceivesAnotherTenantsPairs(t *testing.T) {
	s := tenantServer(t)
	names := []string{``, `"workloads":["web"]`, `"workloads":["api","web"]`, `"workloads":["team-b/web"]`, `"workloads":["team-a/web"]`}
	namespaces := []string{``, `"workloadNamespace":"team-a"`, `"workloadNamespace":"team-b"`}
	registrations := []string{``, `"registration":"reg-a"`, `"registration":"reg-b"`}
	selectors := []string{``, `"clusterSelector":{}`, `"clusterSelector":"team=b"`, `"clusterSelector":"env=staging"`, `"workloadSelector":{}`}
	checked := 0
	for _, a := range names {
		for _, b := range namespaces {
			for _, c := range registrations {
				for _, d := range selectors {
					var fields []string
					for _, f := range []string{a, b, c, d} {
						if f != "" {
							fields = append(fields, f)
						}
					}
					params := "{" + strings.Join(fields, ",") + "}"
					r := do(t, s, "POST", "/api/v1/getparams.execute", "Bearer a-tok", argoBody(params), nil)
					if r.code != 200 {
						if r.code != 400 && r.code != 403 {
							t.Fatalf("%s: status %d: %s", params, r.code, r.raw)
						}
						continue
					}
					checked++
					for _, p := range pairDetails(t, r, false) {
						if !strings.HasPrefix(p, "team-a/") || !strings.Contains(p, "@reg-a.") || strings.HasSuffix(p, ".a2") {
							t.Fatalf("%s: tenant team-a received %s", params, p)
						}
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no request was answered")
	}
}

// fluxQueryOf turns the Argo CD parameters of a case into the Flux query that asks the same.
func fluxQueryOf(t *testing.T, params string) string {
	t.Helper()
	q := url.Values{}
	if params == "" {
		return ""
	}
	var p parameters
	if err := jsonUnmarshalStrict([]byte(params), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Workloads) > 0 {
		q.Set("workloads", strings.Join(p.Workloads, ","))
	}
	for key, v := range map[string]string{"workloadNamespace": p.WorkloadNamespace, "registration": p.Registration} {
		if v != "" {
			q.Set(key, v)
		}
	}
	if len(p.ClusterSelector) > 0 {
		var sel string
		if err := jsonUnmarshalStrict(p.ClusterSelector, &sel); err != nil {
			t.Fatalf("flux cases take selectors as strings: %s", p.ClusterSelector)
		}
		q.Set("clusterSelector", sel)
	}
	return q.Encode()
}

func TestTenantsFileIsStrict(t *testing.T) {
	for name, body := range map[string]string{
		"unknown field":          "tenants: [{name: a, workloadNamespaces: [a], registrations: [r], namespaces: [b]}]",
		"no namespaces":          "tenants: [{name: a, registrations: [r]}]",
		"no registrations":       "tenants: [{name: a, workloadNamespaces: [a]}]",
		"not a DNS label":        "tenants: [{name: A.b, workloadNamespaces: [a], registrations: [r]}]",
		"the admin token's name": "tenants: [{name: token, workloadNamespaces: [a], registrations: [r]}]",
		"declared twice":         "tenants: [{name: a, workloadNamespaces: [a], registrations: [r]}, {name: a, workloadNamespaces: [b], registrations: [r]}]",
		"bad selector":           "tenants: [{name: a, workloadNamespaces: [a], registrations: [r], clusterSelector: {matchExpressions: [{key: x, operator: Bogus}]}}]",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tenants.yaml")
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := readTenants(path); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// A token file that names no declared tenant is left out, never given a scope by accident; the
	// other tokens still load.
	dir := t.TempDir()
	for name, tok := range map[string]string{"team-x": "x", "token": "admin"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tokens, err := NewTokens(TokenSource{Dir: dir})
	if err != nil || valid(tokens, "x") || !valid(tokens, "admin") {
		t.Fatalf("err = %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "token")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewTokens(TokenSource{Dir: dir}); err == nil {
		t.Fatal("a directory with no usable token was accepted")
	}
}

// A token that two scopes share stands for neither: which one its holder should get is unknowable,
// and the smaller answer would make Argo CD delete Applications.
func TestTokenSharedBetweenScopesIsRefused(t *testing.T) {
	dir := t.TempDir()
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(tenants, []byte("tenants: [{name: team-a, workloadNamespaces: [a], registrations: [r]}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"team-a": "same", "token": "admin"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tokens, err := NewTokens(TokenSource{Dir: dir, TenantsFile: tenants, Static: []string{"same"}})
	if err != nil {
		t.Fatal(err)
	}
	if valid(tokens, "same") || !valid(tokens, "admin") {
		t.Fatal("a token shared by the full scope and a tenant was accepted")
	}
}

// Revoking a tenant takes effect at the next reload, even while another file fails.
func TestRevokedTenantLosesAccess(t *testing.T) {
	dir := t.TempDir()
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	write := func(path, body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tenants, "tenants: [{name: team-a, workloadNamespaces: [a], registrations: [r]}]")
	write(filepath.Join(dir, "team-a"), "a-tok")
	write(filepath.Join(dir, "team-z"), "z-tok") // undeclared
	tokens, err := NewTokens(TokenSource{Dir: dir, TenantsFile: tenants})
	if err != nil || !valid(tokens, "a-tok") {
		t.Fatalf("err = %v", err)
	}
	write(tenants, "tenants: []")
	if valid(tokens, "a-tok") {
		t.Fatal("a tenant removed from the tenants file kept its access")
	}
}

// The environment token (a static one) stays valid across reloads of the token directory, and a
// failed reload keeps the last good tokens and is counted.
func TestStaticTokenSurvivesReloads(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("from-dir"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := NewTokens(TokenSource{Dir: dir, Static: []string{"from-env"}, ReloadEvery: 0})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // every call reloads
		if !valid(tokens, "from-env") || !valid(tokens, "from-dir") {
			t.Fatalf("reload %d dropped a token", i)
		}
	}
	before := counterValue(t, tokenReloadFailures)
	if err := os.WriteFile(filepath.Join(dir, "team-x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !valid(tokens, "from-dir") || !valid(tokens, "from-env") || valid(tokens, "x") {
		t.Fatal("a failed reload changed the accepted tokens")
	}
	if counterValue(t, tokenReloadFailures) <= before {
		t.Fatal("the failed reload was not counted")
	}
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func jsonUnmarshalStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
