package plugin

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// fluxBase is the base URL the test's providers use to reach the plugin server.
const fluxBase = "http://fleetbridge-plugin.fleetbridge-system.svc:8090"

// The Flux refresher against a real API server with Flux Operator's own ResourceSetInputProvider CRD:
// it nudges fleetbridge's providers, and only them, within seconds of a cluster registering; it leaves
// alone the providers whose answer did not change, across a restart too; and a provider whose answer is
// over its spec.filter.limit gets a Warning Event, the metrics count it and the Workloads whose pairs
// are dropped get InputsTrimmed, following the limit as it is raised, even while no fleetbridge runs.
func TestFluxRefresher(t *testing.T) {
	crds, err := testenv.FluxCRDPaths(testenv.FluxOperatorModule)
	if err != nil {
		t.Fatal(err)
	}
	mgmt, err := testenv.StartManagement(testenv.Options{ExtraCRDPaths: crds})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := mgmt.Stop(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := mgmt.Client
	for _, ns := range []string{"fleet", "argocd", "team-a", "team-b"} {
		must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	}
	must(t, c.Create(ctx, testWorkload("team-a", "web")))
	must(t, c.Create(ctx, testWorkload("team-a", "api")))
	must(t, c.Create(ctx, testWorkload("team-b", "db")))
	registerCluster(t, ctx, mgmt, "c1")

	// fleetbridge's providers in team-a (the default limit of 100, and 2) and team-b; one that polls
	// another server at the same path; one that is not an ExternalService.
	must(t, c.Create(ctx, inputProvider("team-a", "fleetbridge", "ExternalService", fluxBase+"/api/v1/flux/inputs?workloadNamespace=team-a", 0)))
	must(t, c.Create(ctx, inputProvider("team-a", "small", "ExternalService", fluxBase+"/api/v1/flux/inputs?workloadNamespace=team-a", 2)))
	must(t, c.Create(ctx, inputProvider("team-b", "fleetbridge", "ExternalService", fluxBase+"/api/v1/flux/inputs?workloadNamespace=team-b", 0)))
	must(t, c.Create(ctx, inputProvider("team-a", "elsewhere", "ExternalService", "http://other.example.com:8090/api/v1/flux/inputs?workloadNamespace=team-a", 0)))
	must(t, c.Create(ctx, inputProvider("team-a", "github", "GitHubBranch", "https://github.com/example/repo", 0)))

	stop := startPlugin(t, mgmt)
	ours := []types.NamespacedName{{Namespace: "team-a", Name: "fleetbridge"}, {Namespace: "team-a", Name: "small"}, {Namespace: "team-b", Name: "fleetbridge"}}
	first := map[types.NamespacedName]string{}
	testenv.Eventually(t, 20*time.Second, "fleetbridge's providers nudged once synced", func() error {
		for _, key := range ours {
			p := getProvider(t, ctx, c, key)
			if p.GetAnnotations()[FluxReconcileRequestAnnotation] == "" || p.GetAnnotations()[FluxAnswerAnnotation] == "" {
				return fmt.Errorf("%s has annotations %v", key, p.GetAnnotations())
			}
			first[key] = p.GetAnnotations()[FluxReconcileRequestAnnotation]
		}
		return nil
	})
	if metric(t, providersOverLimit) != 0 {
		t.Fatalf("%v providers over their limit before any is", metric(t, providersOverLimit))
	}

	// A new cluster: every team-a and team-b answer grows, and small's 4 inputs are over its limit of 2.
	registerCluster(t, ctx, mgmt, "c2")
	registered := time.Now()
	testenv.Eventually(t, 10*time.Second, "fleetbridge's providers nudged for the new cluster", func() error {
		for _, key := range ours {
			if got := getProvider(t, ctx, c, key).GetAnnotations()[FluxReconcileRequestAnnotation]; got == first[key] {
				return fmt.Errorf("%s still has the request %q", key, got)
			}
		}
		return nil
	})
	t.Logf("providers nudged %.1fs after a cluster registered", time.Since(registered).Seconds())
	for _, name := range []string{"elsewhere", "github"} {
		if p := getProvider(t, ctx, c, types.NamespacedName{Namespace: "team-a", Name: name}); len(p.GetAnnotations()) != 0 {
			t.Fatalf("provider %s is not fleetbridge's, yet has annotations %v", name, p.GetAnnotations())
		}
	}
	// team-a's answer is api@c1, api@c2, web@c1, web@c2: small keeps api's pairs and drops web's.
	testenv.Eventually(t, 10*time.Second, "the limit reported", func() error {
		if got := metric(t, providersOverLimit); got != 1 {
			return fmt.Errorf("providers over limit %v, want 1", got)
		}
		if got := metric(t, inputsDropped); got != 2 {
			return fmt.Errorf("inputs dropped %v, want 2", got)
		}
		if err := expectTrimmed(ctx, c, "team-a", "web", "Flux ResourceSetInputProvider small in this namespace keeps 2 of 4 inputs (spec.filter.limit) and drops 2 of this Workload's pairs"); err != nil {
			return err
		}
		if err := expectTrimmed(ctx, c, "team-a", "api", ""); err != nil {
			return err
		}
		return expectTrimmed(ctx, c, "team-b", "db", "")
	})
	testenv.Eventually(t, 10*time.Second, "a Warning Event on the provider over its limit", func() error {
		list := &eventsv1.EventList{}
		if err := c.List(ctx, list, client.InNamespace("team-a")); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name != "small" || e.Regarding.Kind != "ResourceSetInputProvider" || e.Reason != fleetv1.ReasonInputLimitExceeded {
				continue
			}
			if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Note, "with 4 inputs") || !strings.Contains(e.Note, "keeps the first 2") {
				return fmt.Errorf("event %s %s: %q", e.Type, e.Reason, e.Note)
			}
			for _, foreign := range []string{"team-b", "web", "api", "c1", "c2"} {
				if strings.Contains(e.Note, foreign) {
					return fmt.Errorf("event note %q names %q", e.Note, foreign)
				}
			}
			return nil
		}
		return fmt.Errorf("no %s Event regarding team-a/small among %d", fleetv1.ReasonInputLimitExceeded, len(list.Items))
	})

	// A change that only team-b's answer sees: team-b's provider is nudged, team-a's are left alone.
	unchanged := func() map[types.NamespacedName]string {
		out := map[types.NamespacedName]string{}
		for _, key := range ours[:2] {
			out[key] = getProvider(t, ctx, c, key).GetResourceVersion()
		}
		return out
	}
	before, teamB := unchanged(), getProvider(t, ctx, c, ours[2]).GetAnnotations()[FluxReconcileRequestAnnotation]
	must(t, c.Create(ctx, testWorkload("team-b", "cache")))
	testenv.Eventually(t, 10*time.Second, "team-b's provider nudged", func() error {
		if got := getProvider(t, ctx, c, ours[2]).GetAnnotations()[FluxReconcileRequestAnnotation]; got == teamB {
			return fmt.Errorf("still %q", got)
		}
		return nil
	})
	time.Sleep(time.Second) // several more passes at the 200 ms interval
	if after := unchanged(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("team-a's providers were written although their answer did not change: %v, then %v", before, after)
	}

	// A restarted plugin (a new leader) nudges nothing whose answer is the one recorded on it.
	stop()
	before = unchanged()
	before[ours[2]] = getProvider(t, ctx, c, ours[2]).GetResourceVersion()
	stop = startPlugin(t, mgmt)
	defer func() { stop() }()
	teamB = getProvider(t, ctx, c, ours[2]).GetAnnotations()[FluxReconcileRequestAnnotation]
	must(t, c.Create(ctx, testWorkload("team-b", "queue")))
	testenv.Eventually(t, 20*time.Second, "team-b's provider nudged after the restart", func() error {
		if got := getProvider(t, ctx, c, ours[2]).GetAnnotations()[FluxReconcileRequestAnnotation]; got == teamB {
			return fmt.Errorf("still %q", got)
		}
		return nil
	})
	after := unchanged()
	if fmt.Sprint(after) != fmt.Sprint(map[types.NamespacedName]string{ours[0]: before[ours[0]], ours[1]: before[ours[1]]}) {
		t.Fatalf("team-a's providers were written after the restart although their answer did not change: %v, then %v", before, after)
	}

	// A spec change alone (no fleet change) is looked at: a limit of 3 drops one of web's pairs.
	setLimit := func(limit int64) {
		small := getProvider(t, ctx, c, ours[1])
		must(t, unstructured.SetNestedField(small.Object, limit, "spec", "filter", "limit"))
		must(t, c.Update(ctx, small))
	}
	setLimit(3)
	testenv.Eventually(t, 10*time.Second, "the new limit reported", func() error {
		if got := metric(t, inputsDropped); got != 1 {
			return fmt.Errorf("inputs dropped %v, want 1", got)
		}
		return expectTrimmed(ctx, c, "team-a", "web", "Flux ResourceSetInputProvider small in this namespace keeps 3 of 4 inputs (spec.filter.limit) and drops 1 of this Workload's pairs")
	})

	// The limit raised while no fleetbridge runs: the next one clears the condition it finds.
	stop()
	setLimit(10)
	stop = startPlugin(t, mgmt)
	testenv.Eventually(t, 20*time.Second, "the limit cleared", func() error {
		if got := metric(t, providersOverLimit); got != 0 {
			return fmt.Errorf("providers over limit %v, want 0", got)
		}
		return expectTrimmed(ctx, c, "team-a", "web", "")
	})
}

// startPlugin runs plugin.Setup in a manager of its own against the management server; the returned
// function stops it (once, however often it is called).
func startPlugin(t *testing.T, mgmt *testenv.Management, tweaks ...func(*Options)) func() {
	t.Helper()
	mgr, err := ctrl.NewManager(mgmt.Config, ctrl.Options{
		Scheme:                 mgmt.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// A restarted plugin is a second manager in this process, with the same controller names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	opts := Options{Addr: testenv.FreeAddr(t), Token: "flux-refresher-test", FluxURLs: []string{fluxBase},
		RefreshInterval: 200 * time.Millisecond}
	for _, tweak := range tweaks {
		tweak(&opts)
	}
	_, err = Setup(ctx, mgr, opts)
	must(t, err)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		})
	}
}

// registerCluster publishes a CAPI Cluster as Cluster API does and the owned Argo CD Secret the
// registrar writes once it registered it (the plugin reads nothing else of a registration).
func registerCluster(t *testing.T, ctx context.Context, mgmt *testenv.Management, name string) {
	t.Helper()
	server := "https://" + name + ".example.com:6443"
	must(t, mgmt.PublishCluster(ctx, "fleet", name, server, []byte("unused"), testenv.ClusterOptions{Labels: map[string]string{"env": "prod"}}))
	c := mgmt.Client
	// The Registration says which namespace speaks for it; no registrar runs here.
	reg := &fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}, Spec: fleetv1.RegistrationSpec{ArgoCD: &fleetv1.ArgoCDTarget{Namespace: "argocd"}}}
	if err := c.Create(ctx, reg); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rec := owned.Record{Registration: "fleet", Cluster: types.NamespacedName{Namespace: "fleet", Name: name}, Output: owned.OutputArgoCD,
		KubernetesVersion: "v1.36.3", Reachable: true, Server: server, ArgoCDName: "fleet." + name}
	must(t, c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "argocd", Name: "fleet." + name, Labels: rec.Labels(), Annotations: rec.Annotations()},
		Data:       map[string][]byte{argocd.KeyName: []byte("fleet." + name), argocd.KeyServer: []byte(server)},
	}))
}

func testWorkload(namespace, name string) *fleetv1.Workload {
	return &fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: fleetv1.WorkloadSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
			Source:          fleetv1.WorkloadSource{RepoURL: "https://git.example.com/" + name, Path: "deploy", TargetRevision: "main"},
			Destination:     fleetv1.WorkloadDestination{Namespace: name},
		},
	}
}

// inputProvider is a ResourceSetInputProvider; limit 0 leaves spec.filter out.
func inputProvider(namespace, name, typ, url string, limit int64) *unstructured.Unstructured {
	spec := map[string]any{"type": typ, "url": url}
	if strings.HasPrefix(url, "http://") {
		spec["insecure"] = true
	}
	if limit > 0 {
		spec["filter"] = map[string]any{"limit": limit}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "fluxcd.controlplane.io/v1", "kind": "ResourceSetInputProvider",
		"metadata": map[string]any{"namespace": namespace, "name": name},
		"spec":     spec,
	}}
}

func getProvider(t *testing.T, ctx context.Context, c client.Client, key types.NamespacedName) *unstructured.Unstructured {
	t.Helper()
	p := &unstructured.Unstructured{}
	p.SetGroupVersionKind(providerGVK)
	must(t, c.Get(ctx, key, p))
	return p
}

// expectTrimmed checks a Workload's InputsTrimmed message; "" means it has no such condition.
func expectTrimmed(ctx context.Context, c client.Client, namespace, name, want string) error {
	w := &fleetv1.Workload{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, w); err != nil {
		return err
	}
	got := meta.FindStatusCondition(w.Status.Conditions, fleetv1.InputsTrimmedCondition)
	switch {
	case want == "" && got != nil:
		return fmt.Errorf("%s/%s has InputsTrimmed %q, want none", namespace, name, got.Message)
	case want != "" && (got == nil || got.Message != want || got.Reason != fleetv1.ReasonInputLimitExceeded):
		return fmt.Errorf("%s/%s has InputsTrimmed %+v, want %q", namespace, name, got, want)
	}
	return nil
}

func metric(t *testing.T, g prometheus.Metric) float64 {
	t.Helper()
	m := &dto.Metric{}
	must(t, g.Write(m))
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
