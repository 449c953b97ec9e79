package config

import (
	"encoding/base64"
	"fmt"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/fleetbridge/fleetbridge/plugin"
)

// chartTenant is one entry of the plugin.tenants value.
type chartTenant struct {
	plugin.Tenant
	FluxNamespaces *[]string `json:"fluxNamespaces,omitempty"`
}

// flux is where the tenant's token Secret goes for Flux Operator.
func (ct chartTenant) flux() []string {
	if ct.FluxNamespaces != nil {
		return *ct.FluxNamespaces
	}
	return ct.WorkloadNamespaces
}

// chartValues is what the token checks read from a value set, merged with the chart's defaults.
type chartValues struct {
	enabled                       bool
	secretName, argoNS, configMap string
	createConfigMap               bool
	requestTimeout                string
	extraNamespaces               []string
	tenants                       []chartTenant
	maxAnswerBytes                int64
	pluginURL                     string
}

func readChartValues(t *testing.T, namespace string, v chartutil.Values) chartValues {
	t.Helper()
	str := func(p string) string {
		got, err := v.PathValue(p)
		if err != nil {
			t.Fatalf("value %s: %v", p, err)
		}
		return fmt.Sprint(got)
	}
	out := chartValues{
		enabled:         str("plugin.enabled") == "true",
		secretName:      str("plugin.token.secretName"),
		argoNS:          str("argocd.namespace"),
		configMap:       str("argocd.pluginConfigMap.name"),
		createConfigMap: str("argocd.pluginConfigMap.create") == "true",
		requestTimeout:  str("argocd.pluginConfigMap.requestTimeout"),
		pluginURL:       "http://fleetbridge-plugin." + namespace + ".svc:" + str("plugin.port"),
	}
	// YAML numbers arrive as float64, --set ones as int64.
	switch n := v["plugin"].(map[string]any)["maxAnswerBytes"].(type) {
	case float64:
		out.maxAnswerBytes = int64(n)
	case int64:
		out.maxAnswerBytes = n
	default:
		t.Fatalf("plugin.maxAnswerBytes is a %T", n)
	}
	plug, _ := v["plugin"].(map[string]any)
	for _, key := range []struct {
		from any
		into any
	}{{plug["tenants"], &out.tenants}, {plug["token"].(map[string]any)["extraNamespaces"], &out.extraNamespaces}} {
		raw, err := yaml.Marshal(key.from)
		must(t, err)
		must(t, yaml.UnmarshalStrict(raw, key.into))
	}
	return out
}

// checkTokens: every object the plugin's tokens need, and nothing else.
//   - The full-scope token is one value, in the release namespace, in Argo CD's namespace (labelled so
//     Argo CD reads it) and in plugin.token.extraNamespaces, under the key "token".
//   - The Secret the plugin mounts as --plugin-tokens-dir holds "token" and one key per tenant.
//   - Each tenant's Secret <secretName>-<tenant> is in Argo CD's namespace and in its Flux namespaces
//     only, with one key, "token", equal to the tenant's key in the tokens directory; no two tenants, and
//     no tenant and the full scope, share a token.
//   - Each tenant has a plugin ConfigMap naming its Secret, and the plugin's --plugin-configmaps says whose
//     token each ConfigMap carries.
//   - The tenants file the plugin reads (--plugin-tenants-file, through its volume) is accepted by the
//     plugin's own parser and declares exactly the values' scopes; without tenants there is none.
//   - --max-answer-bytes is passed only when plugin.maxAnswerBytes is set.
func checkTokens(t *testing.T, objs []*unstructured.Unstructured, namespace string, values chartutil.Values) {
	t.Helper()
	v := readChartValues(t, namespace, values)
	secrets := map[string]*unstructured.Unstructured{} // "namespace/name"
	for _, o := range objs {
		if o.GetKind() == "Secret" {
			secrets[o.GetNamespace()+"/"+o.GetName()] = o
		}
	}
	if !v.enabled {
		if len(secrets) != 0 {
			t.Errorf("the plugin is disabled, yet the chart renders Secrets %v", keys(secrets))
		}
		return
	}
	want := map[string]bool{} // every Secret the chart should render
	argoLabelled := func(key string) {
		if o := secrets[key]; o != nil && o.GetLabels()["app.kubernetes.io/part-of"] != "argocd" {
			t.Errorf("Secret %s lacks app.kubernetes.io/part-of=argocd", key)
		}
	}

	// The full-scope token.
	admin := ""
	for _, ns := range append([]string{namespace, v.argoNS}, v.extraNamespaces...) {
		key := ns + "/" + v.secretName
		want[key] = true
		tok := secretData(t, secrets[key])["token"]
		if admin == "" {
			admin = tok
		}
		if tok == "" || tok != admin {
			t.Errorf("Secret %s: the full-scope token is missing, empty or differs from the release namespace's", key)
		}
	}
	argoLabelled(v.argoNS + "/" + v.secretName)

	var pluginDeployments int
	var tokensDir map[string]string
	for _, d := range objs {
		if d.GetKind() != "Deployment" {
			continue
		}
		args := containerArgs(d)
		if _, ok := args["--plugin-bind-address"]; !ok {
			for _, a := range []string{"--plugin-tenants-file", "--plugin-tokens-dir", "--max-answer-bytes"} {
				if _, ok := args[a]; ok {
					t.Errorf("%s does not run the plugin but has %s", d.GetName(), a)
				}
			}
			continue
		}
		pluginDeployments++
		dir, key := mounted(t, objs, d, args["--plugin-tokens-dir"])
		if dir == nil || dir.GetKind() != "Secret" || key != "" || dir.GetNamespace() != namespace {
			t.Fatalf("%s: --plugin-tokens-dir=%s is not a mounted Secret of the release namespace", d.GetName(), args["--plugin-tokens-dir"])
		}
		tokensDir = secretData(t, dir)
		wantKeys := []string{plugin.AdminTokenFile}
		wantConfigMaps := []string{v.configMap}
		wantFile := plugin.TenantsFile{}
		for _, ct := range v.tenants {
			wantKeys = append(wantKeys, ct.Name)
			wantConfigMaps = append(wantConfigMaps, v.configMap+"-"+ct.Name+"="+ct.Name)
			wantFile.Tenants = append(wantFile.Tenants, ct.Tenant)
		}
		if got := keys(tokensDir); !slices.Equal(got, sorted(wantKeys)) {
			t.Errorf("%s: the tokens directory has keys %v, want %v", d.GetName(), got, sorted(wantKeys))
		}
		if got := args["--plugin-configmaps"]; got != strings.Join(wantConfigMaps, ",") {
			t.Errorf("%s: --plugin-configmaps=%s, want %s", d.GetName(), got, strings.Join(wantConfigMaps, ","))
		}
		file, hasFile := args["--plugin-tenants-file"]
		switch {
		case len(v.tenants) == 0 && hasFile:
			t.Errorf("%s: --plugin-tenants-file without tenants", d.GetName())
		case len(v.tenants) > 0 && !hasFile:
			t.Errorf("%s: tenants, but no --plugin-tenants-file", d.GetName())
		case hasFile:
			cm, key := mounted(t, objs, d, file)
			if cm == nil || cm.GetKind() != "ConfigMap" || cm.GetNamespace() != namespace || key == "" {
				t.Fatalf("%s: --plugin-tenants-file=%s is not a key of a mounted ConfigMap of the release namespace", d.GetName(), file)
			}
			raw, _, _ := unstructured.NestedString(cm.Object, "data", key)
			if err := plugin.ParseTenants([]byte(raw)); err != nil {
				t.Errorf("%s: the plugin refuses the chart's tenants file: %v\n%s", d.GetName(), err, raw)
			}
			got := plugin.TenantsFile{}
			must(t, yaml.Unmarshal([]byte(raw), &got))
			if !reflect.DeepEqual(got, wantFile) {
				t.Errorf("%s: the tenants file declares %+v, want %+v", d.GetName(), got, wantFile)
			}
		}
		maxAnswer, hasMax := args["--max-answer-bytes"]
		if (v.maxAnswerBytes == 0) == hasMax || (hasMax && maxAnswer != strconv.FormatInt(v.maxAnswerBytes, 10)) {
			t.Errorf("%s: --max-answer-bytes=%q (passed: %v) for plugin.maxAnswerBytes %d", d.GetName(), maxAnswer, hasMax, v.maxAnswerBytes)
		}
	}
	if pluginDeployments == 0 {
		t.Fatal("the plugin is enabled, but no Deployment runs it")
	}

	// The tenants' tokens.
	seen := map[string]string{admin: "the full scope"}
	for _, ct := range v.tenants {
		tok := tokensDir[ct.Name]
		if len(tok) < 32 {
			t.Errorf("tenant %s: its token has %d characters", ct.Name, len(tok))
		}
		if other, dup := seen[tok]; dup {
			t.Errorf("tenant %s has the same token as %s", ct.Name, other)
		}
		seen[tok] = ct.Name
		name := v.secretName + "-" + ct.Name
		for _, ns := range append([]string{v.argoNS}, ct.flux()...) {
			key := ns + "/" + name
			want[key] = true
			data := secretData(t, secrets[key])
			if len(data) != 1 || data["token"] != tok {
				t.Errorf("Secret %s: keys %v, or its token differs from key %s of the tokens directory", key, keys(data), ct.Name)
			}
		}
		argoLabelled(v.argoNS + "/" + name)
		cm := find(objs, "ConfigMap", v.argoNS, v.configMap+"-"+ct.Name)
		if cm == nil {
			t.Errorf("tenant %s: no plugin ConfigMap %s/%s-%s", ct.Name, v.argoNS, v.configMap, ct.Name)
			continue
		}
		wantData := map[string]any{"baseUrl": v.pluginURL, "token": "$" + name + ":token", "requestTimeout": v.requestTimeout}
		if data, _, _ := unstructured.NestedMap(cm.Object, "data"); !reflect.DeepEqual(data, wantData) {
			t.Errorf("ConfigMap %s/%s: %v, want %v", cm.GetNamespace(), cm.GetName(), data, wantData)
		}
	}
	if got := find(objs, "ConfigMap", v.argoNS, v.configMap) != nil; got != v.createConfigMap {
		t.Errorf("the full-scope plugin ConfigMap rendered: %v; argocd.pluginConfigMap.create: %v", got, v.createConfigMap)
	}
	for key := range secrets {
		if !want[key] {
			t.Errorf("unexpected Secret %s", key)
		}
	}
	for key := range want {
		if secrets[key] == nil {
			t.Errorf("no Secret %s", key)
		}
	}
}

// containerArgs are a Deployment's first container's args, as flag name to value.
func containerArgs(d *unstructured.Unstructured) map[string]string {
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	raw, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	out := map[string]string{}
	for _, a := range raw {
		name, value, _ := strings.Cut(a, "=")
		out[name] = value
	}
	return out
}

// mounted is the Secret or ConfigMap (among objs, in the Deployment's namespace) whose volume the
// Deployment's first container mounts at p, with key "", or at p's directory, with p's base name as the
// key; nil when none is.
func mounted(t *testing.T, objs []*unstructured.Unstructured, d *unstructured.Unstructured, p string) (*unstructured.Unstructured, string) {
	t.Helper()
	pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	containers, _, _ := unstructured.NestedSlice(pod, "containers")
	mounts, _, _ := unstructured.NestedSlice(containers[0].(map[string]any), "volumeMounts")
	volumes, _, _ := unstructured.NestedSlice(pod, "volumes")
	for _, m := range mounts {
		m := m.(map[string]any)
		key := ""
		switch m["mountPath"] {
		case p:
		case path.Dir(p):
			key = path.Base(p)
		default:
			continue
		}
		for _, vol := range volumes {
			vol := vol.(map[string]any)
			if vol["name"] != m["name"] {
				continue
			}
			if name, found, _ := unstructured.NestedString(vol, "secret", "secretName"); found {
				return find(objs, "Secret", d.GetNamespace(), name), key
			}
			if name, found, _ := unstructured.NestedString(vol, "configMap", "name"); found {
				return find(objs, "ConfigMap", d.GetNamespace(), name), key
			}
		}
	}
	return nil, ""
}

func find(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	return nil
}

// secretData is a rendered Secret's data, decoded; empty for a nil Secret.
func secretData(t *testing.T, s *unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	if s == nil {
		return out
	}
	data, _, _ := unstructured.NestedStringMap(s.Object, "data")
	for k, b64 := range data {
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatalf("Secret %s/%s key %s: %v", s.GetNamespace(), s.GetName(), k, err)
		}
		out[k] = string(raw)
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// The multi-tenant example's values make the chart render what the example's ApplicationSets need: each
// names a plugin ConfigMap in its own namespace that carries a tenant's token (by --plugin-configmaps),
// one tenant per ApplicationSet, and that tenant's scope holds the ApplicationSet's workloadNamespace and
// registration parameters, which the plugin would refuse with a 403 otherwise.
func TestChartServesTheMultiTenantExample(t *testing.T) {
	const namespace = "fleetbridge-system"
	ch := loadChart(t)
	values, err := chartutil.ReadValuesFile("../examples/multi-tenant/values.yaml")
	must(t, err)
	manifest, err := render(ch, namespace, values)
	must(t, err)
	objs := decodeObjects(t, []byte(manifest))
	merged, err := chartutil.CoalesceValues(ch, values)
	must(t, err)
	checkTokens(t, objs, namespace, merged)
	scopes := map[string]plugin.Tenant{}
	for _, ct := range readChartValues(t, namespace, merged).tenants {
		scopes[ct.Name] = ct.Tenant
	}
	d := find(objs, "Deployment", namespace, "fleetbridge")
	if d == nil {
		t.Fatal("no Deployment fleetbridge")
	}
	tenantOf := map[string]string{}
	for _, entry := range strings.Split(containerArgs(d)["--plugin-configmaps"], ",") {
		name, tenant, _ := strings.Cut(entry, "=")
		tenantOf[name] = tenant
	}

	files, err := filepath.Glob("../examples/multi-tenant/*.yaml")
	must(t, err)
	used := map[string]string{} // tenant -> ApplicationSet
	for _, file := range files {
		if filepath.Base(file) == "values.yaml" {
			continue
		}
		for _, o := range decodeObjects(t, mustRead(t, file)) {
			if o.GetKind() != "ApplicationSet" {
				continue
			}
			generators, _, _ := unstructured.NestedSlice(o.Object, "spec", "generators")
			for _, g := range generators {
				name, found, _ := unstructured.NestedString(g.(map[string]any), "plugin", "configMapRef", "name")
				if !found {
					continue
				}
				if find(objs, "ConfigMap", o.GetNamespace(), name) == nil {
					t.Errorf("ApplicationSet %s names ConfigMap %s/%s, which the chart does not render", o.GetName(), o.GetNamespace(), name)
					continue
				}
				tenant := tenantOf[name]
				if tenant == "" {
					t.Errorf("ApplicationSet %s names ConfigMap %s, which carries the full-scope token", o.GetName(), name)
					continue
				}
				if other, ok := used[tenant]; ok {
					t.Errorf("ApplicationSets %s and %s use tenant %s's ConfigMap", other, o.GetName(), tenant)
				}
				used[tenant] = o.GetName()
				params, _, _ := unstructured.NestedStringMap(g.(map[string]any), "plugin", "input", "parameters")
				scope := scopes[tenant]
				if ns := params["workloadNamespace"]; ns != "" && !slices.Contains(scope.WorkloadNamespaces, ns) {
					t.Errorf("ApplicationSet %s asks for workloadNamespace %s, outside tenant %s's %v", o.GetName(), ns, tenant, scope.WorkloadNamespaces)
				}
				if reg := params["registration"]; reg != "" && !slices.Contains(scope.Registrations, reg) {
					t.Errorf("ApplicationSet %s asks for registration %s, outside tenant %s's %v", o.GetName(), reg, tenant, scope.Registrations)
				}
			}
		}
	}
	if len(used) != len(scopes) {
		t.Errorf("the example's ApplicationSets use tenants %v; the values declare %v", keys(used), keys(scopes))
	}
}
