package registrar

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// BenchmarkRotation measures what token rotation costs Argo CD: the reconciles of an ApplicationSet with
// a cluster generator (Argo CD's real ApplicationSet controller, counted by its own
// argocd_appset_reconcile metric) that rotation causes per hour, at 1,000 Clusters in ServiceAccountToken
// mode, with a 1h TTL and the default 24h.
//
//   - renewal windows (the registrar now): the registrar itself renews. The benchmark moves the
//     registrar's clock to the next moment its renewal scheduler has due (the mint a lead before a
//     window, then the window), and counts the Secret writes, how long the window's writes took, and the
//     reconciles they caused. Per hour: the reconciles of a window times the windows an hour, from the
//     schedule (renewalTimeline).
//   - the clock-driven scheme (the registrar before): every token renewed at its own point between 15%
//     and 85% of its lifetime (clockDrivenRenewal, the old renewAt). Its writes, spread over the clock,
//     are replayed in real time for a sample period by a plain client rewriting the same Secrets' tokens
//     at the times that schedule gives a fleet in steady state; per hour: reconciles per write times the
//     schedule's writes an hour.
//
// The cold start's writes (one create per Secret) come before either measurement and are not counted.
func BenchmarkRotation(b *testing.B) {
	ctx, n := context.Background(), benchClusters()
	installArgoCDCRDs(b, ctx)
	f := newPublishedFleet(b, ctx, "rotation", n)
	for _, ttl := range []time.Duration{time.Hour, 24 * time.Hour} {
		b.Run("ttl="+strings.TrimSuffix(ttl.String(), "0m0s"), func(b *testing.B) { benchRotation(b, ctx, f, n, ttl) })
	}
}

func installArgoCDCRDs(tb testing.TB, ctx context.Context) {
	tb.Helper()
	paths, err := testenv.ArgoCDCRDPaths()
	if err != nil {
		tb.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	for i, p := range paths {
		if !strings.HasPrefix(p, "/") {
			paths[i] = root + "/" + p
		}
	}
	if _, err := envtest.InstallCRDs(mgmt.Config, envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true}); err != nil {
		tb.Fatal(err)
	}
}

func benchRotation(b *testing.B, ctx context.Context, f *benchFleet, n int, ttl time.Duration) {
	b.StopTimer()
	tag := strings.ToLower(strings.TrimSuffix(ttl.String(), "0m0s"))
	name, argoNS := "bench-rot-"+tag, "argocd-rot-"+tag
	reg := benchRegistration(b, ctx, f, name, argoNS, fleetv1.CredentialsServiceAccountToken)
	base := reg.DeepCopy()
	reg.Spec.Credentials.TokenTTL = &metav1.Duration{Duration: ttl}
	// Each TTL's Registration has its own workload ServiceAccount: the one before it is dropped without
	// its cleanup, and a ServiceAccount another Registration labelled is never taken over.
	reg.Spec.Credentials.ServiceAccount.Name = "fleetbridge-rot-" + tag
	if err := mgmt.Client.Patch(ctx, reg, client.MergeFrom(base)); err != nil {
		b.Fatal(err)
	}
	f.preCreateAccess(b, ctx, reg)

	metricsAddr := testenv.FreeAddr(b)
	appsets, err := mgmt.StartApplicationSetController(ctx, argoNS, nil, "--metrics-addr", metricsAddr, "--loglevel", "warn")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { appsets.Stop() })
	appSet := rotationAppSet(argoNS, "fleet")
	if err := mgmt.Client.Create(ctx, appSet); err != nil {
		b.Fatal(err)
	}

	mgmtCalls, workloadCalls := newCallCounter(argoNS, n), newCallCounter("", 0)
	clock := &testClock{}
	opts := benchOptions()
	opts.Now = clock.Now
	bm := startBenchManager(b, mgmtCalls, workloadCalls, opts)
	elapsed := bm.waitRegistered(b, 10*time.Minute)
	b.Logf("cold start: %d Secrets in %s", n, elapsed.Round(time.Millisecond))
	waitApplications(b, ctx, argoNS, n, 10*time.Minute)
	waitReconcilesQuiet(b, metricsAddr, "fleet", 5*time.Second)

	// Renewal windows, by the registrar.
	var windowReconciles, windowWrites []int
	var bursts []time.Duration
	for w := 0; w < 2; w++ {
		// The mint a lead before the window writes nothing.
		_, before := mgmtCalls.secretWrites()
		advanceToNextDue(b, clock, bm)
		waitQuiet(mgmtCalls, workloadCalls, 3*time.Second, 5*time.Minute)
		if _, after := mgmtCalls.secretWrites(); after != before {
			b.Errorf("minting ahead of window %d wrote %d Secrets; want none", w+1, after-before)
		}
		r0 := appSetReconciles(b, metricsAddr, "fleet")
		_, w0 := mgmtCalls.secretWrites()
		mgmtCalls.mu.Lock()
		mgmtCalls.secretWriteTimes = nil
		mgmtCalls.mu.Unlock()
		at := advanceToNextDue(b, clock, bm)
		waitQuiet(mgmtCalls, workloadCalls, 3*time.Second, 5*time.Minute)
		r1 := waitReconcilesQuiet(b, metricsAddr, "fleet", 5*time.Second)
		_, w1 := mgmtCalls.secretWrites()
		mgmtCalls.mu.Lock()
		times := append([]time.Time(nil), mgmtCalls.secretWriteTimes...)
		mgmtCalls.mu.Unlock()
		burst := time.Duration(0)
		if len(times) > 1 {
			burst = times[len(times)-1].Sub(times[0])
		}
		windowReconciles, windowWrites, bursts = append(windowReconciles, r1-r0), append(windowWrites, w1-w0), append(bursts, burst)
		b.Logf("window %d (%s on the registrar's clock): %d Secrets written within %s, %d ApplicationSet reconciles",
			w+1, at.UTC().Format("15:04"), w1-w0, burst.Round(time.Millisecond), r1-r0)
	}
	bm.stop(b)

	// The clock-driven scheme, replayed.
	sample := 2 * time.Minute
	if ttl > 2*time.Hour {
		sample = 4 * time.Minute
	}
	secrets := &corev1.SecretList{}
	if err := mgmt.Client.List(ctx, secrets, client.InNamespace(argoNS), client.MatchingLabels{owned.LabelRegistration: name}); err != nil {
		b.Fatal(err)
	}
	r0 := appSetReconciles(b, metricsAddr, "fleet")
	replayed := replayClockDriven(b, ctx, secrets.Items, ttl, sample)
	r1 := waitReconcilesQuiet(b, metricsAddr, "fleet", 5*time.Second)

	oldPerHour := clockDrivenWritesPerHour(n, ttl)
	oldPerWrite := float64(r1-r0) / float64(max(replayed, 1))
	windowsPerHour := windowsPerHourOf(b, n, ttl)
	perWindow := mean(windowReconciles)
	b.ReportMetric(perWindow, "reconciles/window")
	b.ReportMetric(windowsPerHour, "windows/hour")
	b.ReportMetric(perWindow*windowsPerHour, "reconciles/hour")
	b.ReportMetric(float64(slicesMax(bursts))/float64(time.Second), "window-writes-s")
	b.ReportMetric(oldPerWrite, "clock-driven-reconciles/write")
	b.ReportMetric(oldPerHour, "clock-driven-writes/hour")
	b.ReportMetric(oldPerWrite*oldPerHour, "clock-driven-reconciles/hour")
	count, seconds, _ := appSetMetrics(b, metricsAddr, "fleet")
	b.Logf("the ApplicationSet's reconciles took %.2f s on average (%d in all, cold start included)", seconds/float64(max(count, 1)), count)
	b.Logf("windows: %v Secrets, %v reconciles a window, %.2f windows an hour: %.1f rotation reconciles an hour",
		windowWrites, windowReconciles, windowsPerHour, perWindow*windowsPerHour)
	b.Logf("clock-driven: %d writes replayed over %s caused %d reconciles (%.2f a write); %.0f writes an hour: %.0f rotation reconciles an hour",
		replayed, sample, r1-r0, oldPerWrite, oldPerHour, oldPerWrite*oldPerHour)
}

// advanceToNextDue moves the registrar's clock to the earliest moment its renewal scheduler has due,
// and returns it.
func advanceToNextDue(tb testing.TB, clock *testClock, bm *benchManager) time.Time {
	tb.Helper()
	s := bm.reg.Clusters.renewals
	s.mu.Lock()
	var next time.Time
	for _, at := range s.due {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	s.mu.Unlock()
	if next.IsZero() {
		tb.Fatal("the renewal scheduler has nothing due")
	}
	if d := next.Sub(clock.Now()); d > 0 {
		clock.Advance(d + 10*time.Millisecond)
	}
	return next
}

// rotationAppSet is an ApplicationSet with a cluster generator over every Argo CD cluster Secret.
func rotationAppSet(namespace, name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
		"metadata": map[string]any{"namespace": namespace, "name": name},
		"spec": map[string]any{
			"generators": []any{map[string]any{"clusters": map[string]any{}}},
			"syncPolicy": map[string]any{"preserveResourcesOnDeletion": true},
			"template": map[string]any{
				"metadata": map[string]any{"name": "{{nameNormalized}}-guestbook"},
				"spec": map[string]any{
					"project":     "default",
					"source":      map[string]any{"repoURL": "https://git.example.invalid/apps.git", "path": "guestbook", "targetRevision": "main"},
					"destination": map[string]any{"server": "{{server}}", "namespace": "guestbook"},
				},
			},
		},
	}}
}

// waitApplications waits until namespace holds n Applications.
func waitApplications(tb testing.TB, ctx context.Context, namespace string, n int, timeout time.Duration) {
	tb.Helper()
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "ApplicationList"})
	deadline := time.Now().Add(timeout)
	for {
		if err := mgmt.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
			tb.Fatal(err)
		}
		if len(list.Items) >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d Applications after %s", len(list.Items), n, timeout)
		}
		time.Sleep(2 * time.Second)
	}
}

// appSetMetrics reads, from the ApplicationSet controller's metrics endpoint, the reconcile count and
// total seconds of one ApplicationSet (argocd_appset_reconcile; every one when name is empty) and whether
// the controller is idle: no request queued and no worker busy (controller-runtime's workqueue_depth and
// active workers).
func appSetMetrics(tb testing.TB, addr, name string) (count int, seconds float64, idle bool) {
	tb.Helper()
	match := ""
	if name != "" {
		match = `name="` + name + `"`
	}
	busy := metricValue(tb, addr, "workqueue_depth", `name="applicationset"`) +
		metricValue(tb, addr, "controller_runtime_active_workers", `controller="applicationset"`)
	return int(metricValue(tb, addr, "argocd_appset_reconcile_count", match)),
		metricValue(tb, addr, "argocd_appset_reconcile_sum", match), busy == 0
}

func appSetReconciles(tb testing.TB, addr, name string) int {
	n, _, _ := appSetMetrics(tb, addr, name)
	return n
}

// waitReconcilesQuiet waits until the ApplicationSet controller has been idle, with the reconcile count
// unchanged, for quiet, and returns the count.
func waitReconcilesQuiet(tb testing.TB, addr, name string, quiet time.Duration) int {
	tb.Helper()
	last, _, _ := appSetMetrics(tb, addr, name)
	since := time.Now()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Since(since) < quiet && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		n, _, idle := appSetMetrics(tb, addr, name)
		if n != last || !idle {
			last, since = n, time.Now()
		}
	}
	return last
}

// clockDrivenRenewal is the renewal point of the scheme before renewal windows: between 15% and 85% of
// the lifetime, from a hash of seed.
func clockDrivenRenewal(t tokenTimes, seed string) time.Time {
	life := t.ExpiresAt.Sub(t.IssuedAt)
	h := fnv.New64a()
	_, _ = h.Write([]byte(seed))
	jitter := time.Duration(h.Sum64() % uint64(life*7/10))
	return t.IssuedAt.Add(life * 85 / 100).Add(-jitter)
}

// clockDrivenWritesPerHour is how many renewals an hour the clock-driven scheme makes for a fleet in
// steady state: each Cluster renews every f*ttl, f its fixed fraction.
func clockDrivenWritesPerHour(n int, ttl time.Duration) float64 {
	rng := rand.New(rand.NewPCG(2026, 15))
	sum := 0.0
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		period := clockDrivenRenewal(tokenTimes{IssuedAt: issued, ExpiresAt: issued.Add(ttl)}, renewalSeed(randomUID(rng), "fleet")).Sub(issued)
		sum += float64(time.Hour) / float64(period)
	}
	return sum
}

// windowsPerHourOf is the renewal windows an hour of the registrar's schedule, over a week.
func windowsPerHourOf(tb testing.TB, n int, ttl time.Duration) float64 {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writes := renewalTimeline(tb, rand.New(rand.NewPCG(2026, 12)), n, ttl, 7*24*time.Hour, start)
	windows := map[time.Time]bool{}
	for _, w := range writes {
		if w.Sub(start) >= ttl {
			windows[w] = true
		}
	}
	return float64(len(windows)) / (7*24 - ttl.Hours())
}

// replayClockDriven rewrites the tokens of secrets at the times the clock-driven scheme renews them in a
// steady state (each Cluster at a uniform phase of its own period), for sample, and returns the writes.
func replayClockDriven(tb testing.TB, ctx context.Context, secrets []corev1.Secret, ttl, sample time.Duration) int {
	tb.Helper()
	rng := rand.New(rand.NewPCG(2026, 16))
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type write struct {
		at time.Duration
		i  int
	}
	var plan []write
	for i := range secrets {
		period := clockDrivenRenewal(tokenTimes{IssuedAt: issued, ExpiresAt: issued.Add(ttl)}, renewalSeed(randomUID(rng), "fleet")).Sub(issued)
		for at := time.Duration(rng.Int64N(int64(period))); at < sample; at += period {
			plan = append(plan, write{at, i})
		}
	}
	sort.Slice(plan, func(a, b int) bool { return plan[a].at < plan[b].at })
	start := time.Now()
	for k, w := range plan {
		time.Sleep(time.Until(start.Add(w.at)))
		s := &secrets[w.i]
		cfg, err := argocd.ParseConfig(s.Data[argocd.KeyConfig])
		if err != nil {
			tb.Fatal(err)
		}
		cfg.BearerToken = fmt.Sprintf("replayed-%d", k)
		raw, err := json.Marshal(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		patch := fmt.Sprintf(`{"data":{%q:%q}}`, argocd.KeyConfig, base64.StdEncoding.EncodeToString(raw))
		if err := mgmt.Client.Patch(ctx, s, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			tb.Fatal(err)
		}
	}
	time.Sleep(time.Until(start.Add(sample)))
	return len(plan)
}

func mean(v []int) float64 {
	if len(v) == 0 {
		return 0
	}
	sum := 0
	for _, x := range v {
		sum += x
	}
	return float64(sum) / float64(len(v))
}

func slicesMax(v []time.Duration) time.Duration {
	m := time.Duration(0)
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
