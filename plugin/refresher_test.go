package plugin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// The ApplicationSet refresher against a real API server with Argo CD's own ApplicationSet CRD. It
// nudges the ApplicationSets that use fleetbridge's plugin ConfigMap, and only them, when their answer
// changes. A change that arrives while Argo CD has not finished the last nudge (the annotation is still
// there) is nudged again once Argo CD removes the annotation: Argo CD removes it at the end of the
// reconcile, and may have read the answer before the change. No Argo CD controller runs here; the test
// removes the annotation as the ApplicationSet controller does.
func TestApplicationSetRefresher(t *testing.T) {
	crds, err := testenv.ArgoCDCRDPaths()
	must(t, err)
	mgmt, err := testenv.StartManagement(testenv.Options{ExtraCRDPaths: crds})
	must(t, err)
	defer func() {
		if err := mgmt.Stop(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := mgmt.Client
	for _, ns := range []string{"fleet", "argocd", "team-a"} {
		must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	}
	must(t, c.Create(ctx, testWorkload("team-a", "web")))
	registerCluster(t, ctx, mgmt, "c1")
	must(t, c.Create(ctx, pluginAppSet("ours", "fleetbridge-plugin")))
	must(t, c.Create(ctx, pluginAppSet("elsewhere", "another-plugin")))
	ours := types.NamespacedName{Namespace: "argocd", Name: "ours"}

	stop := startPlugin(t, mgmt, func(o *Options) { o.ConfigMaps = map[string]string{"fleetbridge-plugin": ""} })
	defer stop()
	before := metric(t, refreshes)
	testenv.Eventually(t, 20*time.Second, "the ApplicationSet nudged once synced", func() error {
		return expectRefresh(ctx, c, ours, true)
	})
	if got := metric(t, refreshes) - before; got != 1 {
		t.Fatalf("%v refreshes, want 1", got)
	}

	// The fleet changes while Argo CD has not finished that refresh; the refresher sees it (it looks
	// every 200 ms), then Argo CD ends its reconcile.
	registerCluster(t, ctx, mgmt, "c2")
	time.Sleep(2 * time.Second)
	removeRefresh(t, ctx, c, ours)
	testenv.Eventually(t, 5*time.Second, "the change nudged once Argo CD finished the earlier refresh", func() error {
		return expectRefresh(ctx, c, ours, true)
	})
	if got := metric(t, refreshes) - before; got != 2 {
		t.Fatalf("%v refreshes, want 2", got)
	}

	// Nothing changes: no nudge.
	removeRefresh(t, ctx, c, ours)
	time.Sleep(2 * time.Second)
	must(t, expectRefresh(ctx, c, ours, false))
	must(t, expectRefresh(ctx, c, types.NamespacedName{Namespace: "argocd", Name: "elsewhere"}, false))
}

// pluginAppSet is an ApplicationSet in argocd whose plugin generator uses configMap, for team-a's
// Workloads.
func pluginAppSet(name, configMap string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
		"metadata": map[string]any{"namespace": "argocd", "name": name},
		"spec": map[string]any{
			"goTemplate": true,
			"generators": []any{map[string]any{"plugin": map[string]any{
				"configMapRef": map[string]any{"name": configMap},
				"input":        map[string]any{"parameters": map[string]any{"workloadNamespace": "team-a"}},
			}}},
			"template": map[string]any{
				"metadata": map[string]any{"name": "{{ .workload.name }}-{{ .cluster.name }}"},
				"spec": map[string]any{
					"project":     "default",
					"source":      map[string]any{"repoURL": "{{ .workload.repoURL }}", "path": "{{ .workload.path }}", "targetRevision": "{{ .workload.targetRevision }}"},
					"destination": map[string]any{"name": "{{ .cluster.argocdName }}", "namespace": "{{ .workload.destinationNamespace }}"},
				},
			},
		},
	}}
}

func getAppSet(ctx context.Context, c client.Client, key types.NamespacedName) (*unstructured.Unstructured, error) {
	a := &unstructured.Unstructured{}
	a.SetAPIVersion("argoproj.io/v1alpha1")
	a.SetKind("ApplicationSet")
	return a, c.Get(ctx, key, a)
}

// expectRefresh says whether the ApplicationSet has the refresh annotation as wanted.
func expectRefresh(ctx context.Context, c client.Client, key types.NamespacedName, want bool) error {
	a, err := getAppSet(ctx, c, key)
	if err != nil {
		return err
	}
	if _, has := a.GetAnnotations()[RefreshAnnotation]; has != want {
		return fmt.Errorf("ApplicationSet %s has annotations %v, want the refresh annotation: %v", key, a.GetAnnotations(), want)
	}
	return nil
}

// removeRefresh removes the refresh annotation, as Argo CD's ApplicationSet controller does at the end
// of a reconcile.
func removeRefresh(t *testing.T, ctx context.Context, c client.Client, key types.NamespacedName) {
	t.Helper()
	a, err := getAppSet(ctx, c, key)
	must(t, err)
	annotations := a.GetAnnotations()
	delete(annotations, RefreshAnnotation)
	a.SetAnnotations(annotations)
	must(t, c.Update(ctx, a))
}
