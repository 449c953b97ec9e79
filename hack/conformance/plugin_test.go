package conformance

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/applicationset/services/plugin"
	appv1 "github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

const pluginToken = "conformance-token"

// Argo CD's own plugin client (the code its ApplicationSet controller runs) calls the real fleetbridge
// binary, started as a process against a real API server, and reads the expected pairs; fleetbridge's
// non-2xx answers reach it as errors, which is what keeps Argo CD from deleting Applications.
func TestArgoCDPluginClientReadsFleetbridge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	capiCRD := os.Getenv("FLEETBRIDGE_CAPI_CLUSTER_CRD")
	if capiCRD == "" {
		t.Fatal("FLEETBRIDGE_CAPI_CLUSTER_CRD is not set: run `make test`")
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases"), capiCRD}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}

	// The fleet: the Argo CD cluster Secrets fleetbridge's own tests wrote, their CAPI Clusters, a Workload.
	capiLabels := map[string]map[string]any{"edge-1": {"env": "prod"}, "edge-2": {"env": "staging"}, "kc-1": {"env": "prod"}}
	argoNames := map[string]string{}
	for name, data := range fixtures(t, "argocd-cluster-secrets") {
		secret := &corev1.Secret{}
		if err := yaml.Unmarshal(data, secret); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		secret.ResourceVersion, secret.UID, secret.CreationTimestamp = "", "", metaTimeZero
		ensureNamespace(t, ctx, c, secret.Namespace)
		must(t, c.Create(ctx, secret))
		ns, cluster := secret.Labels["fleetbridge.io/cluster-namespace"], secret.Labels["fleetbridge.io/cluster-name"]
		argoNames[cluster] = string(secret.Data["name"])
		// The plugin takes a Registration's Secrets only from the namespace it writes to (no registrar
		// runs here, so the Registration is never reconciled).
		registration := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "fleetbridge.io/v1alpha1", "kind": "Registration",
			"metadata": map[string]any{"name": secret.Labels["fleetbridge.io/registration"]},
			"spec":     map[string]any{"argocd": map[string]any{"namespace": secret.Namespace}},
		}}
		if err := c.Create(ctx, registration); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		ensureNamespace(t, ctx, c, ns)
		must(t, c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
			"metadata": map[string]any{"namespace": ns, "name": cluster, "labels": capiLabels[cluster]},
			"spec":     map[string]any{"controlPlaneEndpoint": map[string]any{"host": "127.0.0.1", "port": 6443}},
		}}))
	}
	ensureNamespace(t, ctx, c, "apps")
	must(t, c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "fleetbridge.io/v1alpha1", "kind": "Workload",
		"metadata": map[string]any{"namespace": "apps", "name": "web"},
		"spec": map[string]any{
			"clusterSelector": map[string]any{"matchLabels": map[string]any{"env": "prod"}},
			"source":          map[string]any{"repoURL": "https://example.com/web.git", "path": "deploy"},
			"destination":     map[string]any{"namespace": "web"},
			"values":          map[string]any{"replicas": 2},
		},
	}}))

	addr := startFleetbridge(t, env)
	baseURL := "http://" + addr

	svc, err := plugin.NewPluginService(ctx, "conformance", baseURL, pluginToken, 10)
	must(t, err)
	resp, err := svc.List(ctx, appv1.PluginParameters{"workloads": jsonValue(`["web"]`)})
	if err != nil {
		t.Fatalf("Argo CD's plugin client failed: %v", err)
	}
	got := map[string]bool{}
	for _, p := range resp.Output.Parameters {
		cluster, _ := p["cluster"].(map[string]any)
		workload, _ := p["workload"].(map[string]any)
		name, _ := cluster["name"].(string)
		if workload["name"] != "web" || workload["repoURL"] != "https://example.com/web.git" {
			t.Errorf("pair %v: wrong workload %v", p["name"], workload)
		}
		if cluster["argocdName"] != argoNames[name] || argoNames[name] == "" {
			t.Errorf("pair for %s: argocdName %v, want %q", name, cluster["argocdName"], argoNames[name])
		}
		if values, _ := workload["values"].(map[string]any); values["replicas"] != float64(2) {
			t.Errorf("pair for %s: values %v", name, workload["values"])
		}
		got[name] = true
	}
	if len(resp.Output.Parameters) != 2 || !got["edge-1"] || !got["kc-1"] {
		t.Fatalf("pairs for %v, want edge-1 and kc-1", got)
	}

	// Non-2xx answers are errors in Argo CD's client, never "zero results".
	bad, err := plugin.NewPluginService(ctx, "conformance", baseURL, "wrong-token", 10)
	must(t, err)
	if _, err := bad.List(ctx, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a 401 did not surface as an error: %v", err)
	}
	if _, err := svc.List(ctx, appv1.PluginParameters{"workload": jsonValue(`["web"]`)}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a 400 did not surface as an error: %v", err)
	}
}

var metaTimeZero = (&corev1.Secret{}).CreationTimestamp

func jsonValue(raw string) apiextensionsv1.JSON { return apiextensionsv1.JSON{Raw: []byte(raw)} }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ensureNamespace(t *testing.T, ctx context.Context, c client.Client, name string) {
	t.Helper()
	ns := &corev1.Namespace{}
	ns.Name = name
	if err := c.Create(ctx, ns); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
}

// startFleetbridge runs the real binary (plugin only: the fixture Secrets point at servers that are gone)
// and waits until it reports ready.
func startFleetbridge(t *testing.T, env *envtest.Environment) string {
	t.Helper()
	bin := os.Getenv("FLEETBRIDGE_BINARY")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "fleetbridge")
		build := exec.Command("go", "build", "-o", bin, "./cmd/fleetbridge")
		build.Dir = filepath.Join("..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build fleetbridge: %v\n%s", err, out)
		}
	}
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "conformance", Groups: []string{"system:masters"}}, nil)
	must(t, err)
	kubeconfig, err := user.KubeConfig()
	must(t, err)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(path, kubeconfig, 0o600))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(bin, "--enable-registrar=false", "--plugin-bind-address="+addr,
		"--metrics-bind-address=0", "--health-probe-bind-address=0", "--fleet-page-bind-address=")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+path, "FLEETBRIDGE_PLUGIN_TOKEN="+pluginToken)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("fleetbridge output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal(fmt.Sprintf("fleetbridge did not become ready on %s", addr))
	return ""
}
