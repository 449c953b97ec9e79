package config

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/fleetbridge"

var kubeVersion = &chartutil.KubeVersion{Version: "v1.36.3", Major: "1", Minor: "36"}

// valueSets are the value combinations every chart test renders: the defaults and the switches a
// platform team is most likely to flip.
var valueSets = []struct {
	name, namespace string
	values          string
}{
	{"defaults", "fleetbridge-system", ``},
	{"split with network policy and service monitor", "fleetbridge-split", `
split: true
registrar: {replicas: 2}
plugin: {replicas: 3}
networkPolicy: {enabled: true, fluxOperator: {enabled: true}}
metrics: {serviceMonitor: {enabled: true, labels: {release: prometheus}}}
`},
	{"confined to listed namespaces", "fleetbridge-confined", `
rbac:
  secretNamespaces: [argocd, team-a]
  clusterNamespaces: [fleet-eu, fleet-us]
plugin: {token: {extraNamespaces: [team-a]}}
`},
	{"split, confined to listed namespaces", "fleetbridge-split-confined", `
split: true
rbac:
  secretNamespaces: [argocd, team-a, team-b]
  clusterNamespaces: [fleet-eu]
`},
	{"ClusterProfiles published", "fleetbridge-profiles", `
registrar: {clusterProfiles: {namespace: fleet-inventory}}
`},
	{"split, ClusterProfiles published", "fleetbridge-split-profiles", `
split: true
registrar: {clusterProfiles: {namespace: fleet-inventory}}
`},
	{"registrar only, Secrets everywhere", "fleetbridge-registrar", `
plugin: {enabled: false}
rbac: {allNamespaceSecrets: true}
`},
	{"plugin only, split, in Argo CD's namespace", "argocd", `
split: true
registrar: {enabled: false}
leaderElection: {enabled: false}
plugin: {token: {value: given-token-1234}, service: {type: NodePort}}
argocd: {pluginConfigMap: {name: fleet-pairs, requestTimeout: 60}}
`},
	// team-a has a cluster selector and its Flux Secret in its own namespace; team-b's Workloads live in
	// two namespaces, and its Flux Secrets go to one of them and to Argo CD's namespace, which has its
	// Argo CD Secret already.
	{"tenants, split", "fleetbridge-tenants", `
split: true
plugin:
  maxAnswerBytes: 67108864
  tenants:
  - name: team-a
    workloadNamespaces: [fleet-team-a]
    registrations: [team-a]
    clusterSelector: {matchLabels: {env: prod}, matchExpressions: [{key: region, operator: In, values: [eu, us]}]}
  - name: team-b
    workloadNamespaces: [fleet-team-b, fleet-shared]
    registrations: [team-b, shared]
    fluxNamespaces: [team-b, argocd]
`},
	{"tenants, in Argo CD's namespace, renamed, without the full-scope ConfigMap", "argocd-tenants", `
argocd: {namespace: argocd-tenants, pluginConfigMap: {name: fleet-pairs, create: false}}
rbac: {secretNamespaces: [argocd-tenants]}
plugin:
  token: {secretName: fleet-token, extraNamespaces: [team-a]}
  tenants:
  - {name: team-a, workloadNamespaces: [team-a], registrations: [team-a]}
  - {name: team-b, workloadNamespaces: [team-b], registrations: [team-b], fluxNamespaces: []}
`},
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func parseValues(t *testing.T, s string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// render is `helm template`: Helm's install action, client-only.
func render(ch *chart.Chart, namespace string, values map[string]any) (string, error) {
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = "fleetbridge", namespace
	install.KubeVersion = kubeVersion
	rel, err := install.Run(ch, values)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

// The chart lints clean and renders for every value set, and every object it renders, CRDs first, is
// accepted by a real API server (server-side dry-run).
func TestChartRendersAndApplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ch := loadChart(t)
	var crds []*unstructured.Unstructured
	for _, f := range ch.CRDObjects() {
		crds = append(crds, decodeObjects(t, f.File.Data)...)
	}
	if len(crds) != 2 {
		t.Fatalf("chart ships %d CRDs, want Registration and Workload", len(crds))
	}
	dryRunApply(t, ctx, "crds/", crds)

	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			values := parseValues(t, vs.values)
			linter := lint.AllWithKubeVersion(chartDir, values, vs.namespace, kubeVersion)
			for _, msg := range linter.Messages {
				if msg.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", msg)
				}
			}
			manifest, err := render(ch, vs.namespace, values)
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeObjects(t, []byte(manifest))
			dryRunApply(t, ctx, vs.name, objs)
			checkUnique(t, objs)
			checkWorkloads(t, objs)
			checkRBAC(t, objs, parseValues(t, vs.values))
			checkComponentRBAC(t, objs)
			merged, err := chartutil.CoalesceValues(ch, parseValues(t, vs.values))
			if err != nil {
				t.Fatal(err)
			}
			checkTokens(t, objs, vs.namespace, merged)
		})
	}
}

// checkUnique: no two rendered objects share a kind, namespace and name: in the cluster they would be one
// object.
func checkUnique(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range objs {
		key := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		if seen[key] {
			t.Errorf("%s is rendered twice", key)
		}
		seen[key] = true
	}
}

// checkWorkloads: every Deployment runs as non-root with a read-only root filesystem, probes and
// resource requests, and its ServiceAccount exists.
func checkWorkloads(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	accounts := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() == "ServiceAccount" {
			accounts[o.GetName()] = true
		}
	}
	deployments := 0
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		deployments++
		pod, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
		if nonRoot, _, _ := unstructured.NestedBool(pod, "securityContext", "runAsNonRoot"); !nonRoot {
			t.Errorf("%s: pod may run as root", o.GetName())
		}
		if sa, _, _ := unstructured.NestedString(pod, "serviceAccountName"); !accounts[sa] {
			t.Errorf("%s: ServiceAccount %q is not rendered", o.GetName(), sa)
		}
		containers, _, _ := unstructured.NestedSlice(pod, "containers")
		for _, c := range containers {
			c := c.(map[string]any)
			if ro, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !ro {
				t.Errorf("%s: root filesystem is writable", o.GetName())
			}
			if esc, found, _ := unstructured.NestedBool(c, "securityContext", "allowPrivilegeEscalation"); !found || esc {
				t.Errorf("%s: privilege escalation allowed", o.GetName())
			}
			for _, probe := range []string{"livenessProbe", "readinessProbe"} {
				if _, found, _ := unstructured.NestedMap(c, probe); !found {
					t.Errorf("%s: no %s", o.GetName(), probe)
				}
			}
			if _, found, _ := unstructured.NestedMap(c, "resources", "requests"); !found {
				t.Errorf("%s: no resource requests", o.GetName())
			}
		}
	}
	if deployments == 0 {
		t.Error("no Deployment rendered")
	}
}

// argoNamespace is where the plugin ConfigMap went ("" without one).
func argoNamespace(objs []*unstructured.Unstructured) string {
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" {
			return o.GetNamespace()
		}
	}
	return ""
}

// A wrong value is refused by values.schema.json with a message naming it.
func TestChartSchemaRejectsWrongValues(t *testing.T) {
	ch := loadChart(t)
	for _, tc := range []struct{ values, mentions string }{
		{`plugin: {port: http}`, "/plugin/port"},
		{`registrar: {resync: ten minutes}`, "/registrar/resync"},
		{`registar: {workers: 2}`, "registar"},
		{`rbac: {secretNamespaces: [Team_A]}`, "/rbac/secretNamespaces/0"},
		{`logLevel: verbose`, "/logLevel"},
		{`replicas: -1`, "/replicas"},
		{`image: {pullPolicy: Sometimes}`, "/image/pullPolicy"},
		{`registrar: {enabled: false}
plugin: {enabled: false}`, "enabled"},
		{`plugin: {maxAnswerBytes: -1}`, "/plugin/maxAnswerBytes"},
		{`plugin: {maxAnswerBytes: 64Mi}`, "/plugin/maxAnswerBytes"},
		{`plugin: {tenants: [{name: token, workloadNamespaces: [a], registrations: [a]}]}`, "/plugin/tenants/0/name"},
		{`plugin: {tenants: [{name: Team_A, workloadNamespaces: [a], registrations: [a]}]}`, "/plugin/tenants/0/name"},
		{`plugin: {tenants: [{name: a, workloadNamespaces: [], registrations: [a]}]}`, "/plugin/tenants/0/workloadNamespaces"},
		{`plugin: {tenants: [{name: a, workloadNamespaces: [a]}]}`, "missing property 'registrations'"},
		{`plugin: {tenants: [{name: a, namespaces: [a], workloadNamespaces: [a], registrations: [a]}]}`, "'namespaces' not allowed"},
		{`plugin: {tenants: [{name: a, workloadNamespaces: [a], registrations: [a], clusterSelector: {matchExpressions: [{key: env, operator: Equals}]}}]}`,
			"/plugin/tenants/0/clusterSelector/matchExpressions/0/operator"},
		{`plugin: {tenants: [{name: a, workloadNamespaces: [a], registrations: [a]}, {name: a, workloadNamespaces: [b], registrations: [b]}]}`,
			"tenant a is declared twice"},
	} {
		_, err := render(ch, "fleetbridge-system", parseValues(t, tc.values))
		if err == nil {
			t.Errorf("%q was accepted", tc.values)
			continue
		}
		if !strings.Contains(err.Error(), tc.mentions) {
			t.Errorf("%q: error does not mention %q: %v", tc.values, tc.mentions, err)
		}
	}
}

// permission is one verb on one resource, in a namespace ("" for cluster-wide).
type permission struct{ namespace, group, resource, verb string }

// grants resolves what each ServiceAccount may do from the rendered roles and bindings.
func grants(t *testing.T, objs []*unstructured.Unstructured) map[string]map[permission]bool {
	t.Helper()
	rules := map[string][]any{} // "ClusterRole/name" or "Role/ns/name"
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			r, _, _ := unstructured.NestedSlice(o.Object, "rules")
			rules["ClusterRole/"+o.GetName()] = r
		case "Role":
			r, _, _ := unstructured.NestedSlice(o.Object, "rules")
			rules["Role/"+o.GetNamespace()+"/"+o.GetName()] = r
		}
	}
	out := map[string]map[permission]bool{}
	for _, o := range objs {
		if o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "RoleBinding" {
			continue
		}
		kind, _, _ := unstructured.NestedString(o.Object, "roleRef", "kind")
		name, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
		ref := kind + "/" + name
		if kind == "Role" {
			ref = "Role/" + o.GetNamespace() + "/" + name
		}
		r, ok := rules[ref]
		if !ok {
			t.Errorf("%s %s refers to %s, which the chart does not render", o.GetKind(), o.GetName(), ref)
			continue
		}
		subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
		for _, s := range subjects {
			s := s.(map[string]any)
			sa := fmt.Sprint(s["namespace"], "/", s["name"])
			if out[sa] == nil {
				out[sa] = map[permission]bool{}
			}
			for _, rule := range r {
				rule := rule.(map[string]any)
				for _, g := range rule["apiGroups"].([]any) {
					for _, res := range rule["resources"].([]any) {
						for _, v := range rule["verbs"].([]any) {
							for _, word := range []any{g, res, v} {
								if word == "*" {
									t.Errorf("%s grants a wildcard", ref)
								}
							}
							out[sa][permission{o.GetNamespace(), g.(string), res.(string), v.(string)}] = true
						}
					}
				}
			}
		}
	}
	return out
}

// checkRBAC: Secret writes are granted only in the Secret namespaces (cluster-wide only when asked),
// CAPI kubeconfig reads only in the cluster namespaces when listed, and together the ServiceAccounts
// hold exactly the permissions the code's RBAC markers ask for (config/rbac/role.yaml) plus leader
// election: nothing the code does not use.
func checkRBAC(t *testing.T, objs []*unstructured.Unstructured, values map[string]any) {
	t.Helper()
	all := grants(t, objs)
	rbac, _ := values["rbac"].(map[string]any)
	secretNS := []string{"argocd"}
	if l, ok := rbac["secretNamespaces"].([]any); ok {
		secretNS = nil
		for _, n := range l {
			secretNS = append(secretNS, n.(string))
		}
	}
	allSecrets, _ := rbac["allNamespaceSecrets"].(bool)
	clusterNS, _ := rbac["clusterNamespaces"].([]any)
	union := map[string]bool{}
	profiles := profileNamespace(values)
	for sa, perms := range all {
		for p := range perms {
			if p.group == profileGroup && (profiles == "" || p.namespace != profiles) {
				t.Errorf("%s may %s %s in %q; ClusterProfiles are published in %q", sa, p.verb, p.resource, p.namespace, profiles)
			}
			if p.group == "" && p.resource == "secrets" {
				switch {
				case p.verb == "create" || p.verb == "delete" || p.verb == "patch" || p.verb == "update":
					if !allSecrets && !slices.Contains(secretNS, p.namespace) {
						t.Errorf("%s may %s Secrets in %q", sa, p.verb, p.namespace)
					}
				case p.namespace == "" && len(clusterNS) > 0 && !allSecrets:
					t.Errorf("%s may %s Secrets cluster-wide although rbac.clusterNamespaces is set", sa, p.verb)
				}
			}
			union[p.group+"|"+p.resource+"|"+p.verb] = true
		}
	}
	n := checkPluginSecrets(t, objs, all, secretNS, allSecrets)
	if split, _ := values["split"].(bool); split && valueEnabled(values, "plugin") && n != 1 {
		t.Errorf("%d plugin Deployments rendered, want 1", n)
	}
	if !valueEnabled(values, "registrar") || !valueEnabled(values, "plugin") {
		return // the exact-set check needs both components
	}
	want := map[string]bool{}
	for _, w := range markerPermissions(t) {
		if profiles != "" || !strings.HasPrefix(w, profileGroup+"|") {
			want[w] = true
		}
	}
	if le, ok := values["leaderElection"].(map[string]any); !ok || le["enabled"] != false {
		for _, w := range []string{"coordination.k8s.io|leases|get", "coordination.k8s.io|leases|list", "coordination.k8s.io|leases|watch",
			"coordination.k8s.io|leases|create", "coordination.k8s.io|leases|update", "coordination.k8s.io|leases|patch",
			"coordination.k8s.io|leases|delete", "|events|create", "|events|patch"} {
			want[w] = true
		}
	}
	if diff := setDiff(union, want); diff != "" {
		t.Errorf("chart RBAC differs from the code's markers (+ chart, - markers):\n%s", diff)
	}
}

// checkPluginSecrets: the plugin on its own (split) may list and watch Secrets in the Secret namespaces
// (everywhere only with rbac.allNamespaceSecrets), and nothing else on them, get included. It reads
// their metadata only; RBAC cannot grant a list without data, but a get would add nothing it uses. It
// returns how many plugin Deployments it checked.
func checkPluginSecrets(t *testing.T, objs []*unstructured.Unstructured, all map[string]map[permission]bool, secretNS []string, allSecrets bool) int {
	t.Helper()
	want := map[string]bool{}
	for _, ns := range secretNS {
		want[ns+"|list"], want[ns+"|watch"] = true, true
	}
	if allSecrets {
		want = map[string]bool{"|list": true, "|watch": true}
	}
	checked := 0
	for _, o := range objs {
		if o.GetKind() != "Deployment" || o.GetLabels()["app.kubernetes.io/component"] != "plugin" {
			continue
		}
		checked++
		name, _, _ := unstructured.NestedString(o.Object, "spec", "template", "spec", "serviceAccountName")
		sa := o.GetNamespace() + "/" + name
		got := map[string]bool{}
		for p := range all[sa] {
			if p.group != "" || p.resource != "secrets" {
				continue
			}
			got[p.namespace+"|"+p.verb] = true
			if p.verb == "get" {
				t.Errorf("the plugin's ServiceAccount %s may get Secrets in %q", sa, p.namespace)
			}
		}
		if diff := setDiff(got, want); diff != "" {
			t.Errorf("the plugin's ServiceAccount %s: Secret namespace|verb differ from list and watch in the Secret namespaces (+ chart, - want):\n%s", sa, diff)
		}
	}
	return checked
}

// checkComponentRBAC: each Deployment's ServiceAccount holds every permission the RBAC markers of the
// packages it runs ask for (plugin, registrar), so a split install is not short of one.
func checkComponentRBAC(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	all := grants(t, objs)
	for _, d := range objs {
		if d.GetKind() != "Deployment" {
			continue
		}
		sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName")
		containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		held := map[string]bool{}
		for p := range all[d.GetNamespace()+"/"+sa] {
			held[p.group+"|"+p.resource+"|"+p.verb] = true
		}
		for _, pkg := range []string{"plugin", "registrar"} {
			if slices.Contains(args, "--enable-"+pkg+"=false") {
				continue
			}
			publishes := slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--cluster-profile-namespace=") })
			for _, w := range packageMarkers(t, "../"+pkg) {
				if strings.HasPrefix(w, profileGroup+"|") && !publishes {
					continue // needed only to publish ClusterProfiles
				}
				if !held[w] {
					t.Errorf("Deployment %s runs the %s but its ServiceAccount %s may not %s", d.GetName(), pkg, sa, w)
				}
			}
		}
	}
}

// packageMarkers are the group|resource|verb triples of a package's +kubebuilder:rbac markers.
func packageMarkers(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	var out []string
	for _, f := range files {
		for _, line := range strings.Split(string(mustRead(t, f)), "\n") {
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), "// +kubebuilder:rbac:")
			if !ok {
				continue
			}
			fields := map[string][]string{}
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				fields[k] = strings.Split(strings.Trim(v, `"`), ";")
			}
			for _, g := range fields["groups"] {
				for _, res := range fields["resources"] {
					for _, v := range fields["verbs"] {
						out = append(out, g+"|"+res+"|"+v)
					}
				}
			}
		}
	}
	return out
}

// profileGroup is the cluster inventory API's group: the registrar needs it only to publish ClusterProfiles.
const profileGroup = "multicluster.x-k8s.io"

// profileNamespace is registrar.clusterProfiles.namespace ("" when profiles are not published).
func profileNamespace(values map[string]any) string {
	reg, _ := values["registrar"].(map[string]any)
	cp, _ := reg["clusterProfiles"].(map[string]any)
	ns, _ := cp["namespace"].(string)
	return ns
}

func valueEnabled(values map[string]any, component string) bool {
	m, _ := values[component].(map[string]any)
	return m == nil || m["enabled"] != false
}

// markerPermissions are the group|resource|verb triples of config/rbac/role.yaml (from the markers).
func markerPermissions(t *testing.T) []string {
	t.Helper()
	role := decodeObjects(t, mustRead(t, "rbac/role.yaml"))
	var out []string
	rules, _, _ := unstructured.NestedSlice(role[0].Object, "rules")
	for _, rule := range rules {
		rule := rule.(map[string]any)
		for _, g := range rule["apiGroups"].([]any) {
			for _, res := range rule["resources"].([]any) {
				for _, v := range rule["verbs"].([]any) {
					out = append(out, fmt.Sprint(g, "|", res, "|", v))
				}
			}
		}
	}
	return out
}

func setDiff(got, want map[string]bool) string {
	var lines []string
	for k := range got {
		if !want[k] {
			lines = append(lines, "+ "+k)
		}
	}
	for k := range want {
		if !got[k] {
			lines = append(lines, "- "+k)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
