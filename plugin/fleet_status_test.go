package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// Workload status reports what its pairs became, against a real API server with Argo CD's Application
// CRD and Flux's Kustomization and HelmRelease CRDs. The test writes the objects and their status as
// Argo CD's ApplicationSet and application controllers, and Flux Operator and Flux's controllers, would:
// none of them runs here. An object is linked to its pair by the fleetbridge.io/pair label, or by its
// name, and only in a namespace the pair's Registration writes that output to (an Application labelled
// with a pair in another namespace does not count); a pair with nothing generated is Missing after the
// grace period; a status change shows within 5 s.
func TestWorkloadFleetStatus(t *testing.T) {
	argoCRDs, err := testenv.ArgoCDCRDPaths()
	must(t, err)
	fluxCRDs, err := testenv.FluxCRDPaths(testenv.KustomizeControllerModule, testenv.HelmControllerModule)
	must(t, err)
	mgmt, ctx := fleetStatusBed(t, append(argoCRDs, fluxCRDs...))
	c := mgmt.Client
	for _, name := range []string{"c1", "c2", "c3"} {
		registerCluster(t, ctx, mgmt, name)
	}
	must(t, c.Create(ctx, testWorkload("team-a", "web")))
	must(t, c.Create(ctx, testWorkload("team-a", "api")))
	pair := func(workload, cluster string) string { return fleet.PairName("team-a", workload, "fleet", cluster) }

	// web in Argo CD: c1 labelled, healthy; c2 named like its pair, degraded; c3 generated nothing.
	c1 := application("web-c1", pair("web", "c1"), "Synced", "Healthy", "")
	must(t, c.Create(ctx, c1))
	c2 := application(pair("web", "c2"), "", "Synced", "Degraded", "Deployment web exceeded its progress deadline")
	must(t, c.Create(ctx, c2))
	// Someone who may create Applications in team-a claims c3's pair: it does not count.
	forged := application("forged-web-c3", pair("web", "c3"), "Synced", "Healthy", "")
	forged.SetNamespace("team-a")
	must(t, c.Create(ctx, forged))
	// api in Flux: c1 applied and ready, c2 failed, c3 not applied yet.
	must(t, createFlux(ctx, c, kustomization("api-c1", pair("api", "c1")), metav1.ConditionTrue, "ReconciliationSucceeded", "main@sha1:aaa", "main@sha1:aaa"))
	must(t, createFlux(ctx, c, helmRelease("api-c2", pair("api", "c2")), metav1.ConditionFalse, "InstallFailed", "", "1.2.3"))
	must(t, createFlux(ctx, c, kustomization("api-c3", pair("api", "c3")), "", "", "", ""))

	stop := startPlugin(t, mgmt, func(o *Options) { o.MissingGrace = 3 * time.Second })
	defer stop()
	web := types.NamespacedName{Namespace: "team-a", Name: "web"}
	testenv.Eventually(t, 20*time.Second, "web's fleet status, c3 Missing after the grace period", func() error {
		return expectFleet(ctx, c, web, fleetv1.WorkloadFleet{Healthy: 1, Degraded: 1, Missing: 1, Revision: "abc123",
			Revisions: []fleetv1.RevisionCount{{Revision: "abc123", Clusters: 2}},
			NotHealthy: []fleetv1.ClusterState{{Cluster: "fleet/c2", State: "Degraded", Reason: "Degraded: Deployment web exceeded its progress deadline"},
				{Cluster: "fleet/c3", State: "Missing", Reason: "nothing generated for it in 3s"}}},
			"fleet/c2 Degraded: Degraded: Deployment web exceeded its progress deadline (and 1 more not healthy)")
	})
	testenv.Eventually(t, 10*time.Second, "api's fleet status", func() error {
		return expectFleet(ctx, c, types.NamespacedName{Namespace: "team-a", Name: "api"}, fleetv1.WorkloadFleet{Healthy: 1, Degraded: 1, OutOfSync: 1,
			Revision: "main@sha1:aaa", Revisions: []fleetv1.RevisionCount{{Revision: "main@sha1:aaa", Clusters: 1}},
			NotHealthy: []fleetv1.ClusterState{{Cluster: "fleet/c2", State: "Degraded", Reason: "InstallFailed: as the test says"},
				{Cluster: "fleet/c3", State: "OutOfSync", Reason: "not applied yet"}}},
			"fleet/c2 Degraded: InstallFailed: as the test says (and 1 more not healthy)")
	})

	// Argo CD's application controller brings c2 back, and the ApplicationSet generates c3's: the status
	// follows within 5 s.
	setAppStatus(t, ctx, c, c2, "Synced", "Healthy", "")
	must(t, c.Create(ctx, application("web-c3", pair("web", "c3"), "Synced", "Healthy", "")))
	changed := time.Now()
	testenv.Eventually(t, 5*time.Second, "web healthy everywhere", func() error {
		return expectFleet(ctx, c, web, fleetv1.WorkloadFleet{Healthy: 3, Revision: "abc123", Revisions: []fleetv1.RevisionCount{{Revision: "abc123", Clusters: 3}}},
			"all 3 clusters healthy at abc123")
	})
	t.Logf("the Workload status followed %.1fs after the Applications changed", time.Since(changed).Seconds())
	w := &fleetv1.Workload{}
	must(t, c.Get(ctx, web, w))
	if w.Status.Conditions[0].Reason != fleetv1.ReasonMatched || w.Status.MatchedClusters != 3 {
		t.Fatalf("Ready %+v, matched %d", w.Status.Conditions, w.Status.MatchedClusters)
	}
}

func expectFleet(ctx context.Context, c client.Client, key types.NamespacedName, want fleetv1.WorkloadFleet, summary string) error {
	w := &fleetv1.Workload{}
	if err := c.Get(ctx, key, w); err != nil {
		return err
	}
	if w.Status.Fleet == nil {
		return fmt.Errorf("no fleet status (summary %q)", w.Status.Summary)
	}
	if got, exp := fmt.Sprintf("%+v", *w.Status.Fleet), fmt.Sprintf("%+v", want); got != exp || w.Status.Summary != summary {
		return fmt.Errorf("fleet %s %q\nwant  %s %q", got, w.Status.Summary, exp, summary)
	}
	return nil
}

// application is an Argo CD Application as an ApplicationSet generates it (pairLabel "" leaves the label
// out), with the status Argo CD's application controller writes.
func application(name, pairLabel, sync, health, message string) *unstructured.Unstructured {
	a := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"namespace": "argocd", "name": name},
		"spec": map[string]any{
			"project":     "default",
			"source":      map[string]any{"repoURL": "https://git.example.com/web", "path": "deploy", "targetRevision": "main"},
			"destination": map[string]any{"server": "https://c.example.com:6443", "namespace": "web"},
		},
		"status": appStatus(sync, health, message),
	}}
	if pairLabel != "" {
		a.SetLabels(map[string]string{PairLabel: pairLabel, "app.kubernetes.io/part-of": "web"})
	}
	return a
}

func appStatus(sync, health, message string) map[string]any {
	h := map[string]any{"status": health}
	if message != "" {
		h["message"] = message
	}
	return map[string]any{"sync": map[string]any{"status": sync, "revision": "abc123"}, "health": h}
}

// setAppStatus writes an Application's status as Argo CD's application controller does (the CRD has no
// status subresource).
func setAppStatus(t *testing.T, ctx context.Context, c client.Client, app *unstructured.Unstructured, sync, health, message string) {
	t.Helper()
	live := app.DeepCopy()
	must(t, c.Get(ctx, client.ObjectKeyFromObject(app), live))
	live.Object["status"] = appStatus(sync, health, message)
	must(t, c.Update(ctx, live))
}

func kustomization(name, pairLabel string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"namespace": "flux-apps", "name": name, "labels": map[string]any{PairLabel: pairLabel}},
		"spec": map[string]any{"interval": "10m", "prune": true, "path": "./deploy",
			"sourceRef": map[string]any{"kind": "GitRepository", "name": "api"}},
	}}
}

func helmRelease(name, pairLabel string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
		"metadata": map[string]any{"namespace": "flux-apps", "name": name, "labels": map[string]any{PairLabel: pairLabel}},
		"spec":     map[string]any{"interval": "10m", "chartRef": map[string]any{"kind": "OCIRepository", "name": "api"}},
	}}
}

// createFlux creates a Flux object and writes its status as its controller would (ready "" writes none).
func createFlux(ctx context.Context, c client.Client, obj *unstructured.Unstructured, ready metav1.ConditionStatus, reason, applied, attempted string) error {
	if err := c.Create(ctx, obj); err != nil {
		return err
	}
	if ready == "" {
		return nil
	}
	status := map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": string(ready), "reason": reason,
		"message": "as the test says", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}}}
	if applied != "" {
		status["lastAppliedRevision"] = applied
	}
	if attempted != "" {
		status["lastAttemptedRevision"] = attempted
	}
	obj.Object["status"] = status
	if err := c.Status().Update(ctx, obj); err != nil {
		return fmt.Errorf("%s status: %w", strings.ToLower(obj.GetKind()), err)
	}
	return nil
}

// A kind whose CRD is installed after fleetbridge started (Flux's Kustomization here) is watched from
// the next look, and its objects show in the Workload status.
func TestWorkloadFleetStatusFindsLaterCRDs(t *testing.T) {
	defer func(d time.Duration) { generatedRecheck = d }(generatedRecheck)
	generatedRecheck = time.Second
	mgmt, ctx := fleetStatusBed(t, nil)
	c := mgmt.Client
	registerCluster(t, ctx, mgmt, "c1")
	must(t, c.Create(ctx, testWorkload("team-a", "api")))
	stop := startPlugin(t, mgmt)
	defer stop()

	fluxCRDs, err := testenv.FluxCRDPaths(testenv.KustomizeControllerModule)
	must(t, err)
	_, err = envtest.InstallCRDs(mgmt.Config, envtest.CRDInstallOptions{Paths: fluxCRDs, ErrorIfPathMissing: true})
	must(t, err)
	must(t, createFlux(ctx, c, kustomization("api-c1", fleet.PairName("team-a", "api", "fleet", "c1")), metav1.ConditionTrue, "ReconciliationSucceeded", "main@sha1:aaa", "main@sha1:aaa"))
	testenv.Eventually(t, 20*time.Second, "the Kustomization in api's status", func() error {
		return expectFleet(ctx, c, types.NamespacedName{Namespace: "team-a", Name: "api"}, fleetv1.WorkloadFleet{Healthy: 1,
			Revision: "main@sha1:aaa", Revisions: []fleetv1.RevisionCount{{Revision: "main@sha1:aaa", Clusters: 1}}}, "all 1 clusters healthy at main@sha1:aaa")
	})
}

// fleetStatusBed starts a management server with the extra CRDs, its namespaces, and the Registration
// "fleet", which writes Argo CD Secrets to argocd and Flux Secrets to flux-apps; the test's end stops it.
func fleetStatusBed(t *testing.T, crds []string) (*testenv.Management, context.Context) {
	t.Helper()
	mgmt, err := testenv.StartManagement(testenv.Options{ExtraCRDPaths: crds})
	must(t, err)
	t.Cleanup(func() {
		if err := mgmt.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	for _, ns := range []string{"fleet", "argocd", "team-a", "flux-apps"} {
		must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	}
	must(t, mgmt.Client.Create(ctx, &fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}, Spec: fleetv1.RegistrationSpec{
		ArgoCD: &fleetv1.ArgoCDTarget{Namespace: "argocd"}, Flux: &fleetv1.FluxTarget{Namespaces: []string{"flux-apps"}}}}))
	return mgmt, ctx
}
