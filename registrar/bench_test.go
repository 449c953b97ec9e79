package registrar

// Fleet-scale benchmarks of the registrar against the real envtest management API server and real
// workload API servers (see bench_fleet_test.go for the fleet). They report numbers; they assert only
// counts (writes), never times. Run them with -benchtime=1x (each measures one cold start):
//
//	go test -run '^$' -bench . -benchtime=1x -timeout 60m ./registrar/
//
// Knobs (environment variables):
//   - FLEETBRIDGE_BENCH_CLUSTERS (default 1000) sizes the cold-start and steady-state fleets;
//   - FLEETBRIDGE_BENCH_RSS_SIZES (default "1000,10000") the binary's memory runs, of FLEETBRIDGE_BINARY
//     (relative to the repository root, e.g. bin/fleetbridge from `make build`) or else a fresh build;
//   - FLEETBRIDGE_BENCH_WORKLOAD_RTT (a Go duration, default none) adds that round-trip time between the
//     registrar and the workload servers, as a network would;
//   - FLEETBRIDGE_BENCH_WORKERS and FLEETBRIDGE_BENCH_KUBE_API_QPS override --workers and --kube-api-qps
//     (burst twice the QPS) of the in-process registrar;
//   - FLEETBRIDGE_BENCH_HEAP_PROFILE and FLEETBRIDGE_BENCH_APISERVER_PROFILE name files for a heap
//     profile of the registrar once registered, and an 8 s CPU profile of the management API server
//     from its start, in the cold-start runs.
//
// The machine running them also runs every API server, etcd and forwarder of the fleet: on a small
// machine the times are bounded by its CPUs (each cold start logs where the CPU went), not by the
// registrar alone.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// The binary's --kube-api-qps and --kube-api-burst defaults (cmd/fleetbridge); the in-process
// benchmarks use them so they measure what a default deployment does.
const (
	binaryKubeAPIQPS   = 200
	binaryKubeAPIBurst = 400
)

// benchWorkloadServers is how many real workload API servers stand in for the fleet.
const benchWorkloadServers = 4

// newPublishedFleet is a fleet of n Clusters on the benchmark's workload servers, published.
func newPublishedFleet(b *testing.B, ctx context.Context, name string, n int) *benchFleet {
	f := newBenchFleet(b, name, benchWorkloadServers, n)
	f.publish(b, ctx, n)
	return f
}

// benchOptions are the registrar's defaults, with FLEETBRIDGE_BENCH_WORKERS overriding --workers.
func benchOptions() Options {
	opts := DefaultOptions()
	if n, err := strconv.Atoi(os.Getenv("FLEETBRIDGE_BENCH_WORKERS")); err == nil && n > 0 {
		opts.Workers = n
	}
	return opts
}

func benchClusters() int {
	if n, err := strconv.Atoi(os.Getenv("FLEETBRIDGE_BENCH_CLUSTERS")); err == nil && n > 0 {
		return n
	}
	return 1000
}

// benchManager is a registrar running in this process with counting transports.
type benchManager struct {
	*inProcessRegistrar
	mgmtCalls *callCounter
	started   time.Time
}

func startBenchManager(tb testing.TB, mgmtCalls, workloadCalls *callCounter, opts Options) *benchManager {
	tb.Helper()
	cfg := benchManagementConfig(tb)
	cfg.Wrap(mgmtCalls.wrap)
	if qps, err := strconv.ParseFloat(os.Getenv("FLEETBRIDGE_BENCH_KUBE_API_QPS"), 32); err == nil {
		cfg.QPS, cfg.Burst = float32(qps), max(int(2*qps), 1)
	}
	opts.WrapWorkloadTransport = workloadCalls.wrap
	p := startRegistrar(tb, cfg, opts)
	return &benchManager{inProcessRegistrar: p, mgmtCalls: mgmtCalls, started: time.Now()}
}

// waitRegistered waits until the target-th distinct Argo CD Secret was written and returns how long
// that took from the manager's start.
func (bm *benchManager) waitRegistered(tb testing.TB, timeout time.Duration) time.Duration {
	tb.Helper()
	select {
	case <-bm.mgmtCalls.done:
		bm.mgmtCalls.mu.Lock()
		defer bm.mgmtCalls.mu.Unlock()
		return bm.mgmtCalls.doneAt.Sub(bm.started)
	case <-time.After(timeout):
		distinct, _ := bm.mgmtCalls.secretWrites()
		tb.Fatalf("only %d of %d Argo CD Secrets written within %s; calls so far:%s", distinct, bm.mgmtCalls.target, timeout,
			bm.mgmtCalls.report(1))
		return 0
	}
}

// waitQuiet waits until neither server has seen a write for quiet (at most limit).
func waitQuiet(mgmtCalls, workloadCalls *callCounter, quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	last := -1
	lastChange := time.Now()
	for time.Now().Before(deadline) {
		_, m := mgmtCalls.snapshot()
		_, w := workloadCalls.snapshot()
		if m+w != last {
			last, lastChange = m+w, time.Now()
		} else if time.Since(lastChange) >= quiet {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// coldStartResult is what one cold start measured.
type coldStartResult struct {
	elapsed time.Duration
	secrets []corev1.Secret
}

// coldStart starts a registrar on a fleet of n published Clusters with one Registration in mode, and
// measures the time until every Argo CD Secret is written, then the calls it made.
func coldStart(b *testing.B, ctx context.Context, f *benchFleet, n int, name string, mode fleetv1.CredentialsMode) coldStartResult {
	b.StopTimer()
	argoNS := "argocd-" + name
	reg := benchRegistration(b, ctx, f, name, argoNS, mode)
	if mode == fleetv1.CredentialsServiceAccountToken {
		f.preCreateAccess(b, ctx, reg)
	}
	mgmtCalls, workloadCalls := newCallCounter(argoNS, n), newCallCounter("", 0)
	groups := f.cpuGroups()
	cpuBefore := takeCPU(groups)
	if path := os.Getenv("FLEETBRIDGE_BENCH_APISERVER_PROFILE"); path != "" {
		go func() {
			rc, err := rest.RESTClientFor(func() *rest.Config {
				c := rest.CopyConfig(mgmt.Config)
				c.GroupVersion = &corev1.SchemeGroupVersion
				c.NegotiatedSerializer = clientgoscheme.Codecs
				return c
			}())
			if err != nil {
				return
			}
			data, err := rc.Get().AbsPath("/debug/pprof/profile").Param("seconds", "8").DoRaw(context.Background())
			if err == nil {
				_ = os.WriteFile(path, data, 0o644)
			}
		}()
	}
	b.StartTimer()
	opts := benchOptions()
	bm := startBenchManager(b, mgmtCalls, workloadCalls, opts)
	elapsed := bm.waitRegistered(b, 10*time.Minute)
	b.StopTimer()
	cpu, cpuTotal := takeCPU(groups).since(groups, cpuBefore)
	if path := os.Getenv("FLEETBRIDGE_BENCH_HEAP_PROFILE"); path != "" {
		time.Sleep(3 * time.Second)
		runtime.GC()
		fh, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		_ = pprof.WriteHeapProfile(fh)
		fh.Close()
	}
	// Late writes (a second write of a Secret, status, Events) count too: wait for quiet.
	waitQuiet(mgmtCalls, workloadCalls, 3*time.Second, time.Minute)
	bm.stop(b)

	res := coldStartResult{elapsed: elapsed}
	list := &corev1.SecretList{}
	if err := mgmt.Client.List(ctx, list, client.InNamespace(argoNS), client.MatchingLabels{owned.LabelRegistration: name}); err != nil {
		b.Fatal(err)
	}
	res.secrets = list.Items
	distinct, total := mgmtCalls.secretWrites()
	if len(list.Items) != n || distinct != n {
		b.Errorf("%d Argo CD Secrets exist, %d were written; want %d", len(list.Items), distinct, n)
	}
	if total != n {
		b.Errorf("%d writes of Argo CD Secrets for %d Secrets; want exactly one each", total, n)
	}
	b.ReportMetric(elapsed.Seconds(), "s-to-all-secrets")
	b.ReportMetric(float64(total)/float64(n), "writes/secret")
	b.ReportMetric(float64(mgmtCalls.total())/float64(n), "mgmt-calls/cluster")
	b.ReportMetric(float64(workloadCalls.total())/float64(n), "workload-calls/cluster")
	b.Logf("%s: %d Clusters on %d workload servers (added round trip %s), %d workers: all Argo CD Secrets after %s (manager start to the last write)",
		mode, n, len(f.servers), benchWorkloadRTT(), opts.Workers, elapsed.Round(time.Millisecond))
	b.Logf("CPU until the last write (%.1f s of %.1f s available on %d CPUs):%s", cpuTotal.Seconds(),
		elapsed.Seconds()*float64(runtime.NumCPU()), runtime.NumCPU(), cpu)
	b.ReportMetric(cpuTotal.Seconds(), "cpu-s")
	b.Logf("management calls:%s", mgmtCalls.report(float64(n)))
	b.Logf("workload calls:%s", workloadCalls.report(float64(n)))
	return res
}

// BenchmarkColdStart measures a registrar starting on a fleet that has no Argo CD Secrets yet, in both
// credentials modes, and in the same run the floor: a client without rate limit writing the same
// Secrets, one at a time and with 8 workers.
func BenchmarkColdStart(b *testing.B) {
	ctx, n := context.Background(), benchClusters()
	f := newPublishedFleet(b, ctx, "cold", n)

	var kc *coldStartResult
	b.Run("kubeconfig", func(b *testing.B) {
		res := coldStart(b, ctx, f, n, "bench-cold-kc", fleetv1.CredentialsKubeconfig)
		kc = &res
	})
	floor := func(b *testing.B, ns string, workers int, apply bool) {
		if kc == nil {
			b.Skip("the floor writes the Secrets the kubeconfig sub-benchmark wrote: run it too")
		}
		groups := f.cpuGroups()
		cpuBefore := takeCPU(groups)
		elapsed := writeFloor(b, ctx, kc.secrets, ns, workers, apply)
		cpu, cpuTotal := takeCPU(groups).since(groups, cpuBefore)
		b.ReportMetric(cpuTotal.Seconds(), "cpu-s")
		b.Logf("CPU:%s", cpu)
		b.ReportMetric(elapsed.Seconds(), "s-to-all-secrets")
		b.ReportMetric(kc.elapsed.Seconds()/elapsed.Seconds(), "kubeconfig/floor")
		b.Logf("floor (%d workers, apply=%v): %d Secrets in %s; the registrar (kubeconfig mode) took %.2fx as long",
			workers, apply, len(kc.secrets), elapsed.Round(time.Millisecond), kc.elapsed.Seconds()/elapsed.Seconds())
	}
	b.Run("floor-sequential", func(b *testing.B) { floor(b, "bench-floor-seq", 1, false) })
	b.Run("floor-8-workers", func(b *testing.B) { floor(b, "bench-floor-8", 8, false) })
	b.Run("floor-8-workers-apply", func(b *testing.B) { floor(b, "bench-floor-8-apply", 8, true) })
	b.Run("serviceaccounttoken", func(b *testing.B) {
		coldStart(b, ctx, f, n, "bench-cold-sat", fleetv1.CredentialsServiceAccountToken)
	})
}

// writeFloor creates (or server-side applies, as the registrar does) copies of secrets in namespace
// with a plain client without client-side rate limit, and returns how long the writes took.
func writeFloor(b *testing.B, ctx context.Context, secrets []corev1.Secret, namespace string, workers int, apply bool) time.Duration {
	b.StopTimer()
	cfg := benchManagementConfig(b)
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.New(cfg, client.Options{Scheme: testenv.NewScheme()})
	if err != nil {
		b.Fatal(err)
	}
	if err := mgmt.EnsureNamespace(ctx, namespace, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := mgmt.Client.DeleteAllOf(context.Background(), &corev1.Secret{}, client.InNamespace(namespace),
			client.HasLabels{owned.LabelRegistration}); err != nil {
			b.Logf("cleanup: %v", err)
		}
	})
	// Warm up discovery and the connection, as the registrar's manager does before its first write.
	if err := c.List(ctx, &corev1.SecretList{}, client.InNamespace(namespace), client.Limit(1)); err != nil {
		b.Fatal(err)
	}
	objs := make([]*corev1.Secret, len(secrets))
	for i, s := range secrets {
		objs[i] = &corev1.Secret{Type: s.Type, Data: s.Data}
		objs[i].Namespace, objs[i].Name, objs[i].Labels, objs[i].Annotations = namespace, s.Name, s.Labels, s.Annotations
	}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	b.StartTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(objs) {
					return
				}
				var err error
				if apply {
					s := objs[i]
					err = c.Apply(ctx, corev1ac.Secret(s.Name, s.Namespace).WithLabels(s.Labels).WithAnnotations(s.Annotations).
						WithType(s.Type).WithData(s.Data), client.FieldOwner(owned.FieldManager), client.ForceOwnership)
				} else {
					err = c.Create(ctx, objs[i])
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return elapsed
}

// BenchmarkSteadyState lets a registered fleet idle for 10 resync periods (each Cluster probed and
// reconciled 10 more times) and counts the writes to the management and workload servers: there must
// be none.
func BenchmarkSteadyState(b *testing.B) {
	ctx, n := context.Background(), benchClusters()
	f := newPublishedFleet(b, ctx, "steady", n)
	const resync, periods = 2 * time.Second, 10
	for _, mode := range []fleetv1.CredentialsMode{fleetv1.CredentialsKubeconfig, fleetv1.CredentialsServiceAccountToken} {
		b.Run(strings.ToLower(string(mode)), func(b *testing.B) {
			b.StopTimer()
			name := "bench-steady-" + strings.ToLower(string(mode))
			argoNS := "argocd-" + name
			reg := benchRegistration(b, ctx, f, name, argoNS, mode)
			if mode == fleetv1.CredentialsServiceAccountToken {
				f.preCreateAccess(b, ctx, reg)
			}
			mgmtCalls, workloadCalls := newCallCounter(argoNS, n), newCallCounter("", 0)
			opts := benchOptions()
			opts.Resync = resync
			bm := startBenchManager(b, mgmtCalls, workloadCalls, opts)
			defer bm.stop(b)
			bm.waitRegistered(b, 10*time.Minute)
			waitQuiet(mgmtCalls, workloadCalls, 5*time.Second, 2*time.Minute)

			mgmtCalls.reset()
			workloadCalls.reset()
			start := time.Now()
			b.StartTimer()
			deadline := start.Add(10 * time.Minute)
			for workloadCalls.minProbes(f, n) < periods && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
			}
			for time.Since(start) < periods*resync {
				time.Sleep(100 * time.Millisecond)
			}
			b.StopTimer()
			window := time.Since(start)
			rounds := workloadCalls.minProbes(f, n)
			_, mWrites := mgmtCalls.snapshot()
			_, wWrites := workloadCalls.snapshot()
			b.ReportMetric(float64(mWrites), "mgmt-writes")
			b.ReportMetric(float64(wWrites), "workload-writes")
			b.ReportMetric(float64(rounds), "resyncs/cluster")
			b.ReportMetric(window.Seconds(), "s-window")
			b.Logf("%s: %d Clusters, resync %s; over %s every Cluster was reconciled at least %d times; writes: management %d, workload %d",
				mode, n, resync, window.Round(time.Millisecond), rounds, mWrites, wWrites)
			b.Logf("management calls in the window:%s", mgmtCalls.report(float64(n)))
			b.Logf("workload calls in the window:%s", workloadCalls.report(float64(n)))
			if rounds < periods {
				b.Errorf("every Cluster was reconciled at least %d times, want %d", rounds, periods)
			}
			if mWrites != 0 || wWrites != 0 {
				b.Errorf("an idle fleet made %d management and %d workload writes, want none", mWrites, wWrites)
			}
		})
	}
}

// BenchmarkPeakRSS runs the real binary (built as `make build` builds it) against the management server
// on fleets of 1,000 and 10,000 Clusters in Kubeconfig mode, and reads its peak RSS (VmHWM) once every
// Argo CD Secret is written. It runs registrar-only (what capi2argo does) and with the plugin server
// (the default).
func BenchmarkPeakRSS(b *testing.B) {
	ctx := context.Background()
	sizes := []int{1000, 10000}
	if env := os.Getenv("FLEETBRIDGE_BENCH_RSS_SIZES"); env != "" {
		sizes = nil
		for _, s := range strings.Split(env, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
				sizes = append(sizes, n)
			}
		}
	}
	biggest := 0
	for _, n := range sizes {
		biggest = max(biggest, n)
	}
	bin := buildBinary(b)
	kubeconfigPath := filepath.Join(b.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, benchManagementKubeconfig(b), 0o600); err != nil {
		b.Fatal(err)
	}
	f := newBenchFleet(b, "rss", benchWorkloadServers, biggest)
	for _, n := range sizes {
		f.publish(b, ctx, n)
		for _, variant := range []struct {
			name string
			args []string
		}{
			{"registrar-only", []string{"--enable-plugin=false"}},
			// The chart's default memory limit, which it passes as --memory-limit.
			{"registrar-only-memlimit-512mi", []string{"--enable-plugin=false", "--memory-limit=512Mi"}},
			{"with-plugin", []string{"--plugin-bind-address=" + testenv.FreeAddr(b)}},
		} {
			b.Run(fmt.Sprintf("clusters=%d/%s", n, variant.name), func(b *testing.B) {
				b.StopTimer()
				name := fmt.Sprintf("bench-rss-%d-%s", n, variant.name)
				argoNS := "argocd-" + name
				benchRegistration(b, ctx, f, name, argoNS, fleetv1.CredentialsKubeconfig)
				metricsAddr := testenv.FreeAddr(b)
				args := append([]string{"--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=0", "--fleet-page-bind-address="}, variant.args...)
				cmd := exec.Command(bin, args...)
				cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath, "FLEETBRIDGE_PLUGIN_TOKEN=bench-token")
				logs, err := os.Create(filepath.Join(b.TempDir(), "fleetbridge.log"))
				if err != nil {
					b.Fatal(err)
				}
				defer logs.Close()
				cmd.Stdout, cmd.Stderr = logs, logs
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				b.StartTimer()
				start := time.Now()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				defer stopProcess(cmd, exited)
				// Its own count of Argo CD Secrets created, from its metrics endpoint: polling the API server
				// for 10,000 Secrets would load it more than the registrar does.
				var elapsed time.Duration
				for {
					created := createdSecrets(metricsAddr)
					if created >= n {
						elapsed = time.Since(start)
						break
					}
					select {
					case err := <-exited:
						b.Fatalf("fleetbridge exited: %v (log: %s)", err, logs.Name())
					case <-time.After(100 * time.Millisecond):
					}
					if time.Since(start) > 20*time.Minute {
						b.Fatalf("%d of %d Argo CD Secrets after %s", created, n, time.Since(start))
					}
				}
				b.StopTimer()
				if count, err := countSecrets(ctx, argoNS, name); err != nil || count != n {
					b.Fatalf("%d Argo CD Secrets exist (%v), want %d", count, err, n)
				}
				time.Sleep(5 * time.Second) // Events, status, and the GC after the burst
				hwm, rss, err := procMemory(cmd.Process.Pid)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(hwm)/1024, "peak-RSS-MB")
				b.ReportMetric(float64(rss)/1024, "RSS-MB")
				b.ReportMetric(elapsed.Seconds(), "s-to-all-secrets")
				status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
				var split []string
				for _, line := range strings.Split(string(status), "\n") {
					if strings.HasPrefix(line, "RssAnon:") || strings.HasPrefix(line, "RssFile:") {
						split = append(split, strings.Join(strings.Fields(line), " "))
					}
				}
				b.Logf("%d Clusters (%s): all Argo CD Secrets after %s (from the process start, 100 ms polling); VmHWM %.1f MB, VmRSS %.1f MB (%s)",
					n, variant.name, elapsed.Round(time.Millisecond), float64(hwm)/1024, float64(rss)/1024, strings.Join(split, ", "))
			})
		}
	}
}

// buildBinary builds cmd/fleetbridge as `make build` does, unless FLEETBRIDGE_BINARY names one (a path
// relative to the repository root, as `make build` writes bin/fleetbridge, or absolute).
func buildBinary(tb testing.TB) string {
	tb.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	if bin := os.Getenv("FLEETBRIDGE_BINARY"); bin != "" {
		if !filepath.IsAbs(bin) {
			bin = filepath.Join(root, bin)
		}
		if _, err := os.Stat(bin); err != nil {
			tb.Fatal(err)
		}
		return bin
	}
	bin := filepath.Join(tb.TempDir(), "fleetbridge")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/fleetbridge")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build fleetbridge: %v\n%s", err, out)
	}
	return bin
}

func stopProcess(cmd *exec.Cmd, exited chan error) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// createdSecrets reads fleetbridge_secret_writes_total{output="argocd",operation="create"} from a
// metrics endpoint (0 until it answers).
func createdSecrets(addr string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "fleetbridge_secret_writes_total{") && strings.Contains(line, `operation="create"`) &&
			strings.Contains(line, `output="argocd"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return int(v)
		}
	}
	return 0
}

// procMemory reads VmHWM and VmRSS (kB) of a process.
func procMemory(pid int) (hwm, rss int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(fields[1], 10, 64)
		case "VmRSS:":
			rss, _ = strconv.ParseInt(fields[1], 10, 64)
		}
	}
	if hwm == 0 {
		return 0, 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
	}
	return hwm, rss, nil
}
