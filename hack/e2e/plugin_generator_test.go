package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

const pluginNS = "argocd-plugin"

// Argo CD's real ApplicationSet controller, with its requeue left at the 30-minute default, turns
// fleetbridge's plugin answers into exactly the expected Applications (goTemplate true and false); a
// newly registered cluster gets its Application through the refresh annotation within seconds; a
// deregistered one loses it; and when fleetbridge is gone, every existing Application stays.
func TestPluginGeneratorFansOutWorkloads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := mgmt.Client
	const capiNS = "fleet-plugin"
	labels := func(env string) map[string]string { return map[string]string{"env": env, "e2e": "plugin"} }
	_, err := mgmt.AddWorkload(ctx, capiNS, "eu-1", testenv.ClusterOptions{Labels: labels("prod")})
	must(t, err)
	_, err = mgmt.AddWorkload(ctx, capiNS, "us-1", testenv.ClusterOptions{Labels: labels("staging")})
	must(t, err)

	addr := testenv.FreeAddr(t)
	appset, err := mgmt.StartApplicationSetController(ctx, pluginNS, map[string][]byte{"fleetbridge.plugin.token": []byte(pluginToken)})
	must(t, err)
	defer func() {
		if out := appset.Stop(); t.Failed() {
			t.Logf("ApplicationSet controller log:\n%s", tail(out, 80))
		}
	}()
	fb := startFleetbridge(t, addr)
	stopped := false
	defer func() {
		if !stopped {
			if out := fb.Stop(); t.Failed() {
				t.Logf("fleetbridge log:\n%s", tail(out, 80))
			}
		}
	}()

	must(t, c.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: pluginNS, Name: "fleetbridge-plugin"},
		Data:       map[string]string{"baseUrl": "http://" + addr, "token": "$fleetbridge.plugin.token", "requestTimeout": "10"},
	}))
	must(t, c.Create(ctx, &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "plugin-fleet"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"e2e": "plugin"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: pluginNS},
			Credentials:     fleetv1.Credentials{ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-plugin-e2e"}},
		},
	}))
	must(t, mgmt.EnsureNamespace(ctx, "apps", nil))
	must(t, c.Create(ctx, &fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "guestbook"},
		Spec: fleetv1.WorkloadSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
			Registration:    "plugin-fleet",
			Source:          fleetv1.WorkloadSource{RepoURL: "https://github.com/argoproj/argocd-example-apps", Path: "guestbook", TargetRevision: "HEAD"},
			Destination:     fleetv1.WorkloadDestination{Namespace: "guestbook"},
		},
	}))
	must(t, c.Create(ctx, pluginAppSet("fanout", true)))
	must(t, c.Create(ctx, pluginAppSet("fanout-flat", false)))

	want := func(clusters ...string) map[string]string {
		out := map[string]string{}
		for _, cl := range clusters {
			out["guestbook-"+cl+"-nested"] = "name:" + capiNS + "." + cl
			out["guestbook-"+cl+"-flat"] = "name:" + capiNS + "." + cl
		}
		return out
	}
	expectApplicationsIn(t, ctx, pluginNS, want("eu-1"))
	expectWorkloadStatus(t, ctx, types.NamespacedName{Namespace: "apps", Name: "guestbook"}, 1)

	// The generated Applications carry the pair label. Argo CD's application controller does not run
	// here: the test writes their status as it would, and the Workload's status.fleet follows within 5 s.
	guestbook := types.NamespacedName{Namespace: "apps", Name: "guestbook"}
	pair := fleet.PairName("apps", "guestbook", capiNS, "eu-1")
	for _, status := range []struct {
		health, message string
		check           func(*fleetv1.WorkloadFleet, string) bool
	}{
		{"Degraded", "Deployment guestbook-ui exceeded its progress deadline", func(f *fleetv1.WorkloadFleet, summary string) bool {
			return f.Degraded == 1 && f.Healthy == 0 && summary == "fleet-plugin/eu-1 Degraded: Degraded: Deployment guestbook-ui exceeded its progress deadline"
		}},
		{"Healthy", "", func(f *fleetv1.WorkloadFleet, summary string) bool {
			return f.Healthy == 1 && f.Degraded == 0 && summary == "all 1 clusters healthy at 5a4b3c2d1e"
		}},
	} {
		for _, name := range []string{"guestbook-eu-1-nested", "guestbook-eu-1-flat"} {
			writeApplicationStatus(t, ctx, types.NamespacedName{Namespace: pluginNS, Name: name}, pair, status.health, status.message)
		}
		written := time.Now()
		expectFleetStatus(t, ctx, guestbook, 5*time.Second, status.check)
		t.Logf("status.fleet showed %s %.1fs after the Applications' status was written", status.health, time.Since(written).Seconds())
	}

	// A new cluster: registered, then its Applications, with the ApplicationSets' requeue untouched.
	_, err = mgmt.AddWorkload(ctx, capiNS, "eu-2", testenv.ClusterOptions{Labels: labels("prod")})
	must(t, err)
	start := time.Now() // the Cluster and its kubeconfig Secret exist, its control plane is initialized
	expectApplicationsIn(t, ctx, pluginNS, want("eu-1", "eu-2"))
	expectWorkloadStatus(t, ctx, types.NamespacedName{Namespace: "apps", Name: "guestbook"}, 2)
	t.Logf("a newly ready cluster had its Applications %.1fs after it was published", time.Since(start).Seconds())
	if time.Since(start) > 60*time.Second {
		t.Fatal("slower than 60 s")
	}

	// Deregistering a cluster (it stops matching the Registration) removes its Applications.
	patchClusterLabelsIn(t, ctx, capiNS, "eu-2", map[string]string{"env": "prod"})
	expectApplicationsIn(t, ctx, pluginNS, want("eu-1"))

	// fleetbridge goes away: Argo CD gets errors, not an empty answer, and keeps every Application.
	fb.Stop()
	stopped = true
	for _, name := range []string{"fanout", "fanout-flat"} {
		appSet := &unstructured.Unstructured{}
		appSet.SetAPIVersion("argoproj.io/v1alpha1")
		appSet.SetKind("ApplicationSet")
		appSet.SetNamespace(pluginNS)
		appSet.SetName(name)
		refresh := []byte(`{"metadata":{"annotations":{"argocd.argoproj.io/application-set-refresh":"true"}}}`)
		must(t, c.Patch(ctx, appSet, client.RawPatch(types.MergePatchType, refresh)))
	}
	time.Sleep(5 * time.Second)
	expectApplicationsIn(t, ctx, pluginNS, want("eu-1"))
}

// pluginAppSet uses fleetbridge's plugin generator; the goTemplate false variant reads flattened keys.
func pluginAppSet(name string, goTemplate bool) *unstructured.Unstructured {
	appName, destination := "{{ .workload.name }}-{{ .cluster.name }}-nested", "{{ .cluster.argocdName }}"
	path, ns, pairLabel := "{{ .workload.path }}", "{{ .workload.destinationNamespace }}", "{{ .name }}"
	if !goTemplate {
		appName, destination = "{{workload.name}}-{{cluster.name}}-flat", "{{cluster.argocdName}}"
		path, ns, pairLabel = "{{workload.path}}", "{{workload.destinationNamespace}}", "{{name}}"
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
		"metadata": map[string]any{"namespace": pluginNS, "name": name},
		"spec": map[string]any{
			"goTemplate": goTemplate,
			"generators": []any{map[string]any{"plugin": map[string]any{
				"configMapRef": map[string]any{"name": "fleetbridge-plugin"},
				"input":        map[string]any{"parameters": map[string]any{"workloads": []any{"guestbook"}}},
			}}},
			"syncPolicy": map[string]any{"preserveResourcesOnDeletion": true},
			"template": map[string]any{
				"metadata": map[string]any{"name": appName, "labels": map[string]any{"fleetbridge.io/pair": pairLabel}},
				"spec": map[string]any{
					"project":     "default",
					"source":      map[string]any{"repoURL": "https://github.com/argoproj/argocd-example-apps", "path": path, "targetRevision": "HEAD"},
					"destination": map[string]any{"name": destination, "namespace": ns},
				},
			},
		},
	}}
}

// writeApplicationStatus checks an Application carries the pair label, and writes its sync and health
// status as Argo CD's application controller does (the Application CRD has no status subresource).
func writeApplicationStatus(t *testing.T, ctx context.Context, key types.NamespacedName, pair, health, message string) {
	t.Helper()
	app := &unstructured.Unstructured{}
	app.SetAPIVersion("argoproj.io/v1alpha1")
	app.SetKind("Application")
	must(t, mgmt.Client.Get(ctx, key, app))
	if got := app.GetLabels()["fleetbridge.io/pair"]; got != pair {
		t.Fatalf("Application %s has the pair label %q, want %q", key, got, pair)
	}
	h := map[string]any{"status": health}
	if message != "" {
		h["message"] = message
	}
	app.Object["status"] = map[string]any{"sync": map[string]any{"status": "Synced", "revision": "5a4b3c2d1e"}, "health": h}
	must(t, mgmt.Client.Update(ctx, app))
}

// expectFleetStatus waits until a Workload's status.fleet and summary pass check.
func expectFleetStatus(t *testing.T, ctx context.Context, key types.NamespacedName, within time.Duration, check func(*fleetv1.WorkloadFleet, string) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	var w fleetv1.Workload
	for time.Now().Before(deadline) {
		must(t, mgmt.Client.Get(ctx, key, &w))
		if w.Status.Fleet != nil && check(w.Status.Fleet, w.Status.Summary) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Workload %s: status.fleet %+v, summary %q after %s", key, w.Status.Fleet, w.Status.Summary, within)
}

func expectWorkloadStatus(t *testing.T, ctx context.Context, key types.NamespacedName, matched int32) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var w fleetv1.Workload
	for time.Now().Before(deadline) {
		must(t, mgmt.Client.Get(ctx, key, &w))
		ready := meta.FindStatusCondition(w.Status.Conditions, fleetv1.ReadyCondition)
		if w.Status.MatchedClusters == matched && ready != nil && ready.Reason == fleetv1.ReasonMatched && w.Status.ObservedGeneration == w.Generation {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("Workload %s status %+v, want %d matched clusters", key, w.Status, matched)
}
