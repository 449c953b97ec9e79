package config

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// The chart installs and upgrades for real with Helm's SDK: the generated plugin tokens, the full-scope
// one and each tenant's, are the same in fleetbridge's namespace and in Argo CD's (and the tenants' Flux
// namespaces) and survive the upgrade. Then the fleetbridge binary runs as the chart's ServiceAccounts
// (split, confined to listed namespaces), with the args the chart renders and the Secret and ConfigMap
// it mounts, and registers a cluster, answers the plugin and refreshes a Flux ResourceSetInputProvider at
// the chart's in-cluster URL (with a Warning Event, its answer being over its limit): the least-privilege
// RBAC is enough, nothing is refused, and a tenant's token reads its own scope only.
func TestChartInstallUpgradeAndRunWithItsRBAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const (
		release   = "fleetbridge"
		namespace = "fleetbridge-live"
		argoNS    = "argocd-live"
		fleetNS   = "fleet-live"
	)
	for _, ns := range []string{namespace, argoNS, fleetNS, "fleet-unlisted", "workloads-live", "workloads-other"} {
		must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	}
	dir := t.TempDir()
	adminKubeconfig := filepath.Join(dir, "admin.kubeconfig")
	kc, err := mgmt.KubeConfig()
	must(t, err)
	must(t, os.WriteFile(adminKubeconfig, kc, 0o600))

	cfg := &action.Configuration{}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &adminKubeconfig, ptrTo(namespace)
	must(t, cfg.Init(flags, namespace, "secret", func(string, ...any) {}))
	values := parseValues(t, `
split: true
argocd: {namespace: `+argoNS+`}
rbac: {secretNamespaces: [`+argoNS+`], clusterNamespaces: [`+fleetNS+`]}
plugin:
  tenants:
  - {name: live, workloadNamespaces: [workloads-live], registrations: [helm-live]}
  - {name: other, workloadNamespaces: [workloads-other], registrations: [helm-live]}
`)
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace = release, namespace
	if _, err := install.Run(loadChart(t), values); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	token := pluginToken(t, ctx, namespace, argoNS)
	tenantTokens := map[string]string{}
	for _, tenant := range []string{"live", "other"} {
		tenantTokens[tenant] = tenantToken(t, ctx, namespace, tenant, argoNS, "workloads-"+tenant)
		if tenantTokens[tenant] == token {
			t.Fatalf("tenant %s has the full-scope token", tenant)
		}
	}

	values["registrar"] = map[string]any{"workers": 4}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = namespace
	rel, err := upgrade.Run(release, loadChart(t), values)
	if err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	if again := pluginToken(t, ctx, namespace, argoNS); again != token {
		t.Fatal("helm upgrade replaced the generated plugin token")
	}
	for tenant, tok := range tenantTokens {
		if again := tenantToken(t, ctx, namespace, tenant, argoNS, "workloads-"+tenant); again != tok {
			t.Fatalf("helm upgrade replaced tenant %s's generated token", tenant)
		}
	}

	// The plugin's ServiceAccount lists and watches Secrets' metadata in the Secret namespace only, and
	// may get no Secret.
	pluginSA := release + "-plugin"
	testenv.Eventually(t, 10*time.Second, "the plugin's Secret access", func() error {
		for _, c := range []struct {
			verb, namespace string
			allowed         bool
		}{
			{"list", argoNS, true}, {"watch", argoNS, true}, {"get", argoNS, false},
			{"list", fleetNS, false}, {"get", fleetNS, false}, {"list", namespace, false}, {"get", namespace, false},
		} {
			if got := mayAccessSecrets(t, ctx, namespace, pluginSA, c.verb, c.namespace); got != c.allowed {
				return fmt.Errorf("%s may %s Secrets in %s: %v, want %v", pluginSA, c.verb, c.namespace, got, c.allowed)
			}
		}
		return nil
	})

	bin := buildFleetbridge(t, dir)
	pluginAddr := ""
	var procs []*testenv.Process
	for _, d := range decodeObjects(t, []byte(rel.Manifest)) {
		if d.GetKind() != "Deployment" {
			continue
		}
		sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName")
		args, addr := localArgs(t, ctx, d, namespace, dir)
		if addr != "" {
			pluginAddr = addr
		}
		p, err := testenv.StartProcess(bin, args, []string{"KUBECONFIG=" + impersonating(t, dir, kc, namespace, sa)})
		must(t, err)
		procs = append(procs, p)
		defer func() {
			if out := p.Stop(); t.Failed() || strings.Contains(strings.ToLower(out), "forbidden") {
				t.Errorf("%s (as %s) output:\n%s", d.GetName(), sa, out)
			}
		}()
	}
	if len(procs) != 2 || pluginAddr == "" {
		t.Fatalf("want a registrar and a plugin Deployment, got %d (plugin at %q)", len(procs), pluginAddr)
	}

	labels := map[string]string{"fleetbridge-test": "helm-live"}
	_, err = mgmt.AddWorkload(ctx, fleetNS, "live-1", testenv.ClusterOptions{Labels: labels})
	must(t, err)
	_, err = mgmt.AddWorkload(ctx, "fleet-unlisted", "unlisted-1", testenv.ClusterOptions{Labels: labels})
	must(t, err)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "helm-live"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: labels},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: argoNS},
			Credentials:     fleetv1.Credentials{ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-helm-live"}},
		},
	}
	must(t, mgmt.Client.Create(ctx, reg))
	workload := &fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "workloads-live", Name: "app"},
		Spec: fleetv1.WorkloadSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: labels},
			Source:          fleetv1.WorkloadSource{RepoURL: "https://example.com/app.git", Path: "deploy", TargetRevision: "main"},
			Destination:     fleetv1.WorkloadDestination{Namespace: "app"},
		},
	}
	must(t, mgmt.Client.Create(ctx, workload))

	testenv.Eventually(t, 60*time.Second, "the Registration registers the listed namespace's cluster only", func() error {
		got := &fleetv1.Registration{}
		if err := mgmt.Client.Get(ctx, types.NamespacedName{Name: reg.Name}, got); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, fleetv1.ReadyCondition)
		if ready == nil || ready.Reason != fleetv1.ReasonRegistered || got.Status.Selected != 1 || got.Status.Registered != 1 {
			return fmt.Errorf("status %+v, Ready %+v", got.Status, ready)
		}
		return nil
	})
	for _, tok := range []string{token, tenantTokens["live"]} {
		testenv.Eventually(t, 30*time.Second, "the plugin answers with the registered cluster", func() error {
			pairs, err := askPlugin(ctx, pluginAddr, tok, `{}`)
			if err != nil {
				return err
			}
			if len(pairs) != 1 || !strings.HasPrefix(pairs[0], "app-live-1-") {
				return fmt.Errorf("pairs %v", pairs)
			}
			return nil
		})
	}
	// Another tenant of the same Registration reads none of the live tenant's Workloads, and naming their
	// namespace is refused.
	if pairs, err := askPlugin(ctx, pluginAddr, tenantTokens["other"], `{}`); err != nil || len(pairs) != 0 {
		t.Errorf("tenant other: pairs %v, error %v; want none", pairs, err)
	}
	if _, err := askPlugin(ctx, pluginAddr, tenantTokens["other"], `{"workloadNamespace":"workloads-live"}`); err == nil ||
		!strings.HasPrefix(err.Error(), "status 403:") {
		t.Errorf("tenant other asking for workloads-live: %v; want a 403", err)
	}
	// A second Workload puts the provider's answer over its limit of 1.
	second := &fleetv1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: workload.Namespace, Name: "app-2"}, Spec: workload.Spec}
	must(t, mgmt.Client.Create(ctx, second))
	provider := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "fluxcd.controlplane.io/v1", "kind": "ResourceSetInputProvider",
		"metadata": map[string]any{"namespace": "workloads-live", "name": "fleetbridge"},
		"spec": map[string]any{
			"type": "ExternalService", "insecure": true, "filter": map[string]any{"limit": int64(1)},
			"url": "http://" + release + "-plugin." + namespace + ".svc.cluster.local:8090/api/v1/flux/inputs?workloadNamespace=workloads-live",
		},
	}}
	must(t, mgmt.Client.Create(ctx, provider))
	testenv.Eventually(t, 30*time.Second, "the provider refreshed and warned about its limit", func() error {
		must(t, mgmt.Client.Get(ctx, client.ObjectKeyFromObject(provider), provider))
		if provider.GetAnnotations()["reconcile.fluxcd.io/requestedAt"] == "" {
			return fmt.Errorf("provider annotations %v", provider.GetAnnotations())
		}
		events := &eventsv1.EventList{}
		if err := mgmt.Client.List(ctx, events, client.InNamespace("workloads-live")); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Regarding.Name == "fleetbridge" && e.Reason == fleetv1.ReasonInputLimitExceeded {
				return nil
			}
		}
		return fmt.Errorf("no %s Event among %d", fleetv1.ReasonInputLimitExceeded, len(events.Items))
	})
	// The chart's memory limit reached the Go runtime through the downward API and --memory-limit.
	for _, p := range procs {
		if !strings.Contains(p.Output(), "Go runtime memory limit set") {
			t.Errorf("a Deployment's process did not set the Go runtime's memory limit:\n%s", p.Output())
		}
	}
	// The registrar's finalizer cleans up with the chart's RBAC too.
	must(t, mgmt.Client.Delete(ctx, reg))
	testenv.Eventually(t, 30*time.Second, "the Registration's cleanup", func() error {
		err := mgmt.Client.Get(ctx, types.NamespacedName{Name: reg.Name}, &fleetv1.Registration{})
		if err == nil {
			return fmt.Errorf("still there")
		}
		list := &corev1.SecretList{}
		if err := mgmt.Client.List(ctx, list, client.InNamespace(argoNS), client.HasLabels{"fleetbridge.io/registration"}); err != nil {
			return err
		}
		if len(list.Items) != 0 {
			return fmt.Errorf("%d Secrets left", len(list.Items))
		}
		return nil
	})
}

// pluginToken reads the plugin token from fleetbridge's and Argo CD's Secrets, which must agree.
func pluginToken(t *testing.T, ctx context.Context, namespaces ...string) string {
	t.Helper()
	var token string
	for _, ns := range namespaces {
		s := &corev1.Secret{}
		must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fleetbridge-plugin-token"}, s))
		got := string(s.Data["token"])
		if len(got) < 32 || (token != "" && got != token) {
			t.Fatalf("plugin token in %s is short or differs from the other namespace's", ns)
		}
		token = got
	}
	return token
}

// tenantToken reads a tenant's token from its key in the release namespace's Secret (the plugin's tokens
// directory) and from its own Secret in each other namespace, which must all agree.
func tenantToken(t *testing.T, ctx context.Context, namespace, tenant string, namespaces ...string) string {
	t.Helper()
	s := &corev1.Secret{}
	must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: "fleetbridge-plugin-token"}, s))
	token := string(s.Data[tenant])
	if len(token) < 32 {
		t.Fatalf("tenant %s's token in the tokens directory is short", tenant)
	}
	for _, ns := range namespaces {
		s := &corev1.Secret{}
		must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fleetbridge-plugin-token-" + tenant}, s))
		if string(s.Data["token"]) != token {
			t.Fatalf("tenant %s's token in %s differs from the tokens directory's", tenant, ns)
		}
	}
	return token
}

// mayAccessSecrets asks the API server's authorizer whether a ServiceAccount (with the groups a pod's
// token has) may use verb on Secrets in namespace.
func mayAccessSecrets(t *testing.T, ctx context.Context, saNamespace, sa, verb, namespace string) bool {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + saNamespace + ":" + sa,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + saNamespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: "secrets"},
	}}
	must(t, mgmt.Client.Create(ctx, review))
	return review.Status.Allowed
}

// localArgs turns a rendered Deployment's args into a local run: loopback ports, the Lease namespace a
// pod would infer, and its volumes, the installed Secrets and ConfigMaps they name written to local
// directories. It returns the plugin address when it serves one.
func localArgs(t *testing.T, ctx context.Context, d *unstructured.Unstructured, namespace, dir string) ([]string, string) {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	raw, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	downward := downwardEnv(t, containers[0].(map[string]any))
	mounts := localMounts(t, ctx, d, namespace, dir)
	var args []string
	plugin := ""
	for _, a := range raw {
		switch name, _, _ := strings.Cut(a, "="); name {
		case "--metrics-bind-address", "--health-probe-bind-address":
			a = name + "=0"
		case "--fleet-page-bind-address":
			a = name + "=" + testenv.FreeAddr(t)
		case "--plugin-bind-address":
			plugin = testenv.FreeAddr(t)
			a = name + "=" + plugin
		}
		for mountPath, local := range mounts {
			if name, value, _ := strings.Cut(a, "="); value == mountPath || strings.HasPrefix(value, mountPath+"/") {
				a = name + "=" + local + strings.TrimPrefix(value, mountPath)
			}
		}
		for k, v := range downward {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		if strings.Contains(a, "$(") {
			t.Fatalf("%s: argument %q names a variable the container does not define", d.GetName(), a)
		}
		args = append(args, a)
	}
	return append(args, "--leader-election-namespace="+namespace), plugin
}

// localMounts writes each Secret or ConfigMap volume of a Deployment's first container, as installed, to
// a directory of its own, one file per key as the kubelet would; it returns the directories by mount path.
func localMounts(t *testing.T, ctx context.Context, d *unstructured.Unstructured, namespace, dir string) map[string]string {
	t.Helper()
	pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	containers, _, _ := unstructured.NestedSlice(pod, "containers")
	mounts, _, _ := unstructured.NestedSlice(containers[0].(map[string]any), "volumeMounts")
	volumes, _, _ := unstructured.NestedSlice(pod, "volumes")
	out := map[string]string{}
	for _, m := range mounts {
		m := m.(map[string]any)
		files := map[string][]byte{}
		for _, v := range volumes {
			v := v.(map[string]any)
			if v["name"] != m["name"] {
				continue
			}
			if name, found, _ := unstructured.NestedString(v, "secret", "secretName"); found {
				s := &corev1.Secret{}
				must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s))
				files = s.Data
			}
			if name, found, _ := unstructured.NestedString(v, "configMap", "name"); found {
				cm := &corev1.ConfigMap{}
				must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, cm))
				for k, data := range cm.Data {
					files[k] = []byte(data)
				}
			}
		}
		if len(files) == 0 {
			t.Fatalf("%s: volume %v is not an installed Secret or ConfigMap with data", d.GetName(), m["name"])
		}
		local := filepath.Join(dir, d.GetName()+"-"+m["name"].(string))
		must(t, os.MkdirAll(local, 0o700))
		for k, data := range files {
			must(t, os.WriteFile(filepath.Join(local, k), data, 0o600))
		}
		out[m["mountPath"].(string)] = local
	}
	return out
}

// downwardEnv is what the kubelet puts in the container's environment variables that come from its own
// resource limits (the downward API gives them in bytes), to expand $(NAME) in its args as a pod would.
func downwardEnv(t *testing.T, container map[string]any) map[string]string {
	t.Helper()
	env, _, _ := unstructured.NestedSlice(container, "env")
	out := map[string]string{}
	for _, e := range env {
		e := e.(map[string]any)
		ref, found, _ := unstructured.NestedString(e, "valueFrom", "resourceFieldRef", "resource")
		if !found {
			continue
		}
		kind, name, _ := strings.Cut(ref, ".")
		q, found, _ := unstructured.NestedString(container, "resources", kind, name)
		if !found {
			t.Fatalf("env %v reads %s, which the container does not set", e["name"], ref)
		}
		bytes, err := resource.ParseQuantity(q)
		if err != nil {
			t.Fatalf("resources.%s: %v", ref, err)
		}
		out[e["name"].(string)] = strconv.FormatInt(bytes.Value(), 10)
	}
	return out
}

// impersonating writes a kubeconfig that acts as a ServiceAccount, with the groups a pod's token has.
func impersonating(t *testing.T, dir string, admin []byte, namespace, sa string) string {
	t.Helper()
	cfg, err := clientcmd.Load(admin)
	must(t, err)
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = "system:serviceaccount:" + namespace + ":" + sa
		auth.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	path := filepath.Join(dir, sa+".kubeconfig")
	must(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

func buildFleetbridge(t *testing.T, dir string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	must(t, err)
	bin := filepath.Join(dir, "fleetbridge")
	build := exec.Command("go", "build", "-o", bin, "./cmd/fleetbridge")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build fleetbridge: %v\n%s", err, out)
	}
	return bin
}

// askPlugin is Argo CD's plugin generator call with the given input parameters (a JSON object); it
// returns the pair names, or an error starting "status <code>:" for an answer that is not a 200.
func askPlugin(ctx context.Context, addr, token, parameters string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/v1/getparams.execute",
		bytes.NewBufferString(`{"applicationSetName":"live","input":{"parameters":`+parameters+`}}`))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var answer struct {
		Output struct {
			Parameters []struct {
				Name string `json:"name"`
			} `json:"parameters"`
		} `json:"output"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, err
	}
	var names []string
	for _, p := range answer.Output.Parameters {
		names = append(names, p.Name)
	}
	return names, nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ptrTo[T any](v T) *T { return &v }
