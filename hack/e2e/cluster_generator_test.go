package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

const argoNS = "argocd"

// Users who never touch the plugin still get one Application per registered cluster from Argo CD's
// built-in cluster generator, selecting on a label fleetbridge propagated from the CAPI Cluster; and
// relabelling the CAPI Cluster adds or removes the Application.
func TestClusterGeneratorSelectsPropagatedLabels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := mgmt.Client

	prod, err := mgmt.AddWorkload(ctx, "fleet", "prod-1", testenv.ClusterOptions{Labels: map[string]string{"env": "prod"}})
	must(t, err)
	_, err = mgmt.AddWorkload(ctx, "fleet", "staging-1", testenv.ClusterOptions{Labels: map[string]string{"env": "staging"}})
	must(t, err)

	appset, err := mgmt.StartApplicationSetController(ctx, argoNS, nil)
	must(t, err)
	defer func() {
		if out := appset.Stop(); t.Failed() {
			t.Logf("ApplicationSet controller log:\n%s", tail(out, 60))
		}
	}()
	fb := startFleetbridge(t, testenv.FreeAddr(t))
	defer func() {
		if out := fb.Stop(); t.Failed() {
			t.Logf("fleetbridge log:\n%s", tail(out, 60))
		}
	}()

	must(t, c.Create(ctx, &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "fleet"},
		Spec: fleetv1.RegistrationSpec{
			Labels: fleetv1.LabelPolicy{Propagate: []string{"env"}},
			ArgoCD: &fleetv1.ArgoCDTarget{Namespace: argoNS},
		},
	}))
	// The goTemplate ApplicationSet users copy from examples/, and a goTemplate: false variant.
	must(t, c.Create(ctx, exampleAppSet(t, "examples/argocd/applicationset-cluster-generator.yaml")))
	must(t, c.Create(ctx, clusterGeneratorAppSet("guestbook-flat", map[string]string{"env": "prod"})))

	stagingServer := serverOf(t, ctx, "staging-1")
	expectApplications(t, ctx, map[string]string{
		"prod-1-guestbook": "name:fleet.prod-1", "prod-1-guestbook-flat": "server:" + prod.Server()})

	patchClusterLabels(t, ctx, "staging-1", map[string]string{"env": "prod"})
	expectApplications(t, ctx, map[string]string{
		"prod-1-guestbook": "name:fleet.prod-1", "prod-1-guestbook-flat": "server:" + prod.Server(),
		"staging-1-guestbook": "name:fleet.staging-1", "staging-1-guestbook-flat": "server:" + stagingServer})

	patchClusterLabels(t, ctx, "prod-1", map[string]string{"env": "dev"})
	expectApplications(t, ctx, map[string]string{
		"staging-1-guestbook": "name:fleet.staging-1", "staging-1-guestbook-flat": "server:" + stagingServer})
}

// exampleAppSet loads an ApplicationSet from examples/. No application-controller runs here, so its
// Applications are kept free of the resources finalizer, which would hold up their deletion.
func exampleAppSet(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	root, err := testenv.RepoRoot()
	must(t, err)
	data, err := os.ReadFile(filepath.Join(root, path))
	must(t, err)
	obj := &unstructured.Unstructured{}
	must(t, yaml.Unmarshal(data, &obj.Object))
	must(t, unstructured.SetNestedField(obj.Object, true, "spec", "syncPolicy", "preserveResourcesOnDeletion"))
	return obj
}

func clusterGeneratorAppSet(name string, selector map[string]string) *unstructured.Unstructured {
	matchLabels := map[string]any{}
	for k, v := range selector {
		matchLabels[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
		"metadata": map[string]any{"namespace": argoNS, "name": name},
		"spec": map[string]any{
			"generators": []any{map[string]any{"clusters": map[string]any{"selector": map[string]any{"matchLabels": matchLabels}}}},
			// No application-controller runs here: keep generated Applications free of the resources finalizer.
			"syncPolicy": map[string]any{"preserveResourcesOnDeletion": true},
			"template": map[string]any{
				// Without goTemplate, labels are flattened to dotted keys.
				"metadata": map[string]any{"name": `{{metadata.labels.fleetbridge.io/cluster-name}}-` + name},
				"spec": map[string]any{
					"project":     "default",
					"source":      map[string]any{"repoURL": "https://github.com/argoproj/argocd-example-apps", "path": name, "targetRevision": "HEAD"},
					"destination": map[string]any{"server": "{{server}}", "namespace": name},
				},
			},
		},
	}}
}

// expectApplications waits until the Applications in the argocd namespace are exactly want
// (name -> "name:<destination.name>" or "server:<destination.server>").
func expectApplications(t *testing.T, ctx context.Context, want map[string]string) {
	t.Helper()
	expectApplicationsIn(t, ctx, argoNS, want)
}

func expectApplicationsIn(t *testing.T, ctx context.Context, namespace string, want map[string]string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion("argoproj.io/v1alpha1")
		list.SetKind("ApplicationList")
		if err := mgmt.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, app := range list.Items {
			server, _, _ := unstructured.NestedString(app.Object, "spec", "destination", "server")
			name, _, _ := unstructured.NestedString(app.Object, "spec", "destination", "name")
			if name != "" {
				got[app.GetName()] = "name:" + name
			} else {
				got[app.GetName()] = "server:" + server
			}
		}
		if fmt.Sprint(sorted(got)) == fmt.Sprint(sorted(want)) {
			return time.Since(start)
		}
		last = fmt.Sprint(sorted(got))
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("Applications are %s, want %s", last, fmt.Sprint(sorted(want)))
	return 0
}

func sorted(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func patchClusterLabels(t *testing.T, ctx context.Context, name string, labels map[string]string) {
	t.Helper()
	patchClusterLabelsIn(t, ctx, "fleet", name, labels)
}

func patchClusterLabelsIn(t *testing.T, ctx context.Context, namespace, name string, labels map[string]string) {
	t.Helper()
	cluster := &clusterv1.Cluster{}
	must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, cluster))
	base := cluster.DeepCopy()
	cluster.Labels = labels
	must(t, mgmt.Client.Patch(ctx, cluster, client.MergeFrom(base)))
}

func serverOf(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	cluster := &clusterv1.Cluster{}
	must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: "fleet", Name: name}, cluster))
	return fmt.Sprintf("https://%s:%d", cluster.Spec.ControlPlaneEndpoint.Host, cluster.Spec.ControlPlaneEndpoint.Port)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
