package registrar

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// BenchmarkFleetChange measures the seconds from a new Cluster becoming ready (published with an
// initialized control plane) to its Applications existing, with 1,000 Clusters x 20 Workloads already
// generated: 20,000 Applications from four ApplicationSets (one per team namespace of 5 Workloads, as
// teams would split them), with fleetbridge's binary (registrar and plugin server) and Argo CD's real
// ApplicationSet controller, its plugin generator's requeue left at the 30-minute default. It splits the
// time into the registrar (publish to the Argo CD cluster Secret), the refresher (to the last of the four
// ApplicationSet refreshes, fleetbridge_plugin_applicationset_refreshes_total), and Argo CD (to the last
// of the 20 Applications), and reports the mean plugin answer and ApplicationSet reconcile of the change.
// FLEETBRIDGE_BENCH_GOTEMPLATE=false renders the ApplicationSets with Argo CD's fasttemplate instead of
// goTemplate (whose text/template clone per field is most of a reconcile's CPU at this size); the
// sub-benchmark's name says which.
func BenchmarkFleetChange(b *testing.B) {
	goTemplate := os.Getenv("FLEETBRIDGE_BENCH_GOTEMPLATE") != "false"
	b.Run(fmt.Sprintf("goTemplate=%v", goTemplate), func(b *testing.B) { fleetChange(b, goTemplate) })
}

func fleetChange(b *testing.B, goTemplate bool) {
	b.StopTimer()
	ctx, n := context.Background(), benchClusters()
	const teams, perTeam = 4, 5
	installArgoCDCRDs(b, ctx)
	f := newBenchFleet(b, "change", benchWorkloadServers, n+1)
	f.publish(b, ctx, n)
	name, argoNS := "bench-change", "argocd-change"
	benchRegistration(b, ctx, f, name, argoNS, fleetv1.CredentialsKubeconfig)

	pluginAddr, metricsAddr, appSetMetricsAddr := testenv.FreeAddr(b), testenv.FreeAddr(b), testenv.FreeAddr(b)
	// FLEETBRIDGE_BENCH_APPSET_PROFILE: a CPU profile of the ApplicationSet controller during the change,
	// through its pprof endpoint (which Argo CD serves when a file says so).
	appSetProfile := os.Getenv("FLEETBRIDGE_BENCH_APPSET_PROFILE")
	if appSetProfile != "" {
		enabled := filepath.Join(b.TempDir(), "profiler.enabled")
		if err := os.WriteFile(enabled, []byte("true"), 0o600); err != nil {
			b.Fatal(err)
		}
		b.Setenv("ARGOCD_ENABLE_PROFILER_FILE_PATH", enabled)
	}
	appsets, err := mgmt.StartApplicationSetController(ctx, argoNS, map[string][]byte{"fleetbridge.plugin.token": []byte("bench-token")},
		"--metrics-addr", appSetMetricsAddr, "--loglevel", "warn")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { appsets.Stop() })
	if err := mgmt.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: argoNS, Name: "fleetbridge-plugin"},
		Data:       map[string]string{"baseUrl": "http://" + pluginAddr, "token": "$fleetbridge.plugin.token", "requestTimeout": "30"},
	}); err != nil {
		b.Fatal(err)
	}
	var workloadNames []string
	for t := 0; t < teams; t++ {
		ns := fmt.Sprintf("team-%d", t)
		if err := mgmt.EnsureNamespace(ctx, ns, nil); err != nil {
			b.Fatal(err)
		}
		for w := 0; w < perTeam; w++ {
			wl := fmt.Sprintf("w-%02d", t*perTeam+w)
			workloadNames = append(workloadNames, wl)
			if err := mgmt.Client.Create(ctx, &fleetv1.Workload{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wl},
				Spec: fleetv1.WorkloadSpec{
					ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{benchFleetLabel: f.name}},
					Registration:    name,
					Source:          fleetv1.WorkloadSource{RepoURL: "https://git.example.invalid/apps.git", Path: wl, TargetRevision: "main"},
					Destination:     fleetv1.WorkloadDestination{Namespace: wl},
				},
			}); err != nil {
				b.Fatal(err)
			}
		}
		if err := mgmt.Client.Create(ctx, fleetAppSet(argoNS, ns, goTemplate)); err != nil {
			b.Fatal(err)
		}
	}

	bin := buildBinary(b)
	kubeconfigPath := filepath.Join(b.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, benchManagementKubeconfig(b), 0o600); err != nil {
		b.Fatal(err)
	}
	args := []string{"--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=0", "--plugin-bind-address=" + pluginAddr, "--fleet-page-bind-address="}
	// FLEETBRIDGE_BENCH_LOG keeps fleetbridge's log, at debug level (each ApplicationSet refresh).
	logPath := os.Getenv("FLEETBRIDGE_BENCH_LOG")
	if logPath != "" {
		args = append(args, "--zap-log-level=debug")
	} else {
		logPath = filepath.Join(b.TempDir(), "fleetbridge.log")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath, "FLEETBRIDGE_PLUGIN_TOKEN=bench-token")
	logs, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer stopProcess(cmd, exited)

	start := time.Now()
	want := n * teams * perTeam
	waitGenerated(b, ctx, argoNS, want, 40*time.Minute, appsets)
	b.Logf("%d Applications for %d Clusters x %d Workloads generated %s after fleetbridge started", want, n, teams*perTeam, time.Since(start).Round(time.Second))
	waitReconcilesQuietAll(b, appSetMetricsAddr, 10*time.Second)

	refreshes0 := metricValue(b, metricsAddr, "fleetbridge_plugin_applicationset_refreshes_total", "")
	answerCount0 := metricValue(b, metricsAddr, "fleetbridge_plugin_request_duration_seconds_count", "")
	answerSum0 := metricValue(b, metricsAddr, "fleetbridge_plugin_request_duration_seconds_sum", "")
	reconCount0, reconSum0 := appSetTotals(b, appSetMetricsAddr)
	versions0 := applicationVersions(b, ctx, argoNS)

	// The new Cluster.
	key := f.clusterKey(n)
	apps := map[string]bool{}
	for _, wl := range workloadNames {
		apps[wl+"-"+key.Name] = false
	}
	profiled := make(chan error, 1)
	if appSetProfile != "" {
		go func() { profiled <- captureCPUProfile(appSetMetricsAddr, 60*time.Second, appSetProfile) }()
	}
	b.StartTimer()
	published := time.Now()
	b.Logf("the new Cluster is published at %s", published.UTC().Format(time.RFC3339Nano))
	f.publish(b, ctx, n+1)
	var registered, refreshed, generated time.Duration
	secret := types.NamespacedName{Namespace: argoNS, Name: argoSecretName(key)}
	for generated == 0 {
		now := time.Since(published)
		if registered == 0 && mgmt.Client.Get(ctx, secret, &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}}) == nil {
			registered = now
		}
		if refreshed == 0 && metricValue(b, metricsAddr, "fleetbridge_plugin_applicationset_refreshes_total", "")-refreshes0 >= teams {
			refreshed = now
		}
		missing := 0
		for app, seen := range apps {
			if seen {
				continue
			}
			obj := &metav1.PartialObjectMetadata{}
			obj.SetGroupVersionKind(schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Application"})
			if mgmt.Client.Get(ctx, types.NamespacedName{Namespace: argoNS, Name: app}, obj) == nil {
				apps[app] = true
			} else {
				missing++
			}
		}
		if missing == 0 {
			generated = now
		}
		if now > 5*time.Minute {
			b.Fatalf("after %s: %d of %d Applications of the new Cluster (registered after %s, refreshed after %s)", now, len(apps)-missing, len(apps), registered, refreshed)
		}
		select {
		case err := <-exited:
			b.Fatalf("fleetbridge exited: %v (log: %s)", err, logs.Name())
		case <-time.After(50 * time.Millisecond):
		}
	}
	b.StopTimer()
	if appSetProfile != "" {
		if err := <-profiled; err != nil {
			b.Errorf("ApplicationSet controller profile: %v", err)
		}
	}
	waitReconcilesQuietAll(b, appSetMetricsAddr, 5*time.Second)
	answers := metricValue(b, metricsAddr, "fleetbridge_plugin_request_duration_seconds_count", "") - answerCount0
	answerSecs := metricValue(b, metricsAddr, "fleetbridge_plugin_request_duration_seconds_sum", "") - answerSum0
	reconCount, reconSum := appSetTotals(b, appSetMetricsAddr)
	rewritten := 0
	for app, rv := range applicationVersions(b, ctx, argoNS) {
		if old, ok := versions0[app]; ok && old != rv {
			rewritten++
		}
	}
	b.Logf("Argo CD rewrote %d of the %d Applications that existed before", rewritten, len(versions0))
	b.ReportMetric(generated.Seconds(), "s-to-applications")
	b.ReportMetric(registered.Seconds(), "s-to-secret")
	b.ReportMetric(refreshed.Seconds(), "s-to-refresh")
	b.ReportMetric(answerSecs/max(answers, 1), "plugin-answer-s")
	b.ReportMetric((reconSum-reconSum0)/max(reconCount-reconCount0, 1), "appset-reconcile-s")
	b.Logf("new Cluster %s: Argo CD cluster Secret after %s, the 4 ApplicationSets refreshed after %s, its 20 Applications after %s",
		key, registered.Round(time.Millisecond), refreshed.Round(time.Millisecond), generated.Round(time.Millisecond))
	b.Logf("meanwhile: %.0f plugin answers of %.3f s on average; %.0f ApplicationSet reconciles of %.2f s on average",
		answers, answerSecs/max(answers, 1), reconCount-reconCount0, (reconSum-reconSum0)/max(reconCount-reconCount0, 1))
}

// captureCPUProfile writes a CPU profile of the process serving pprof at addr, over d, to path.
func captureCPUProfile(addr string, d time.Duration, path string) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// waitGenerated waits for n Applications in namespace, printing the count each minute. When the count has
// not moved for five minutes it fails with each ApplicationSet's conditions and the end of the
// controller's output, which say why generation stopped.
func waitGenerated(tb testing.TB, ctx context.Context, namespace string, n int, timeout time.Duration, appsets *testenv.Process) {
	tb.Helper()
	start, logged := time.Now(), time.Now()
	last, moved := -1, time.Now()
	for {
		have := len(applicationVersions(tb, ctx, namespace))
		if have >= n {
			return
		}
		if have != last {
			last, moved = have, time.Now()
		}
		if time.Since(logged) >= time.Minute {
			// Stderr, not tb.Logf: a benchmark's log is printed only when it ends.
			fmt.Fprintf(os.Stderr, "%s: %d of %d Applications\n", time.Since(start).Round(time.Second), have, n)
			logged = time.Now()
		}
		if time.Since(moved) > 5*time.Minute || time.Since(start) > timeout {
			out := appsets.Output()
			tb.Fatalf("%d of %d Applications after %s, none new for %s\nApplicationSet conditions:\n%s\nthe controller's last output:\n%s",
				have, n, time.Since(start).Round(time.Second), time.Since(moved).Round(time.Second), appSetConditions(tb, ctx, namespace), out[max(0, len(out)-8000):])
		}
		time.Sleep(2 * time.Second)
	}
}

// appSetConditions lists each ApplicationSet's conditions in namespace, one per line.
func appSetConditions(tb testing.TB, ctx context.Context, namespace string) string {
	tb.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "ApplicationSetList"})
	if err := mgmt.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return err.Error()
	}
	var lines []string
	for _, a := range list.Items {
		conditions, _, _ := unstructured.NestedSlice(a.Object, "status", "conditions")
		resources, _, _ := unstructured.NestedSlice(a.Object, "status", "resources")
		for _, c := range conditions {
			if m, ok := c.(map[string]any); ok {
				lines = append(lines, fmt.Sprintf("%s (%d resources in status): %v=%v %v: %v", a.GetName(), len(resources), m["type"], m["status"], m["reason"], m["message"]))
			}
		}
	}
	return strings.Join(lines, "\n")
}

// applicationVersions are the resourceVersions of the Applications in namespace, by name.
func applicationVersions(tb testing.TB, ctx context.Context, namespace string) map[string]string {
	tb.Helper()
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "ApplicationList"})
	if err := mgmt.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]string, len(list.Items))
	for _, a := range list.Items {
		out[a.Name] = a.ResourceVersion
	}
	return out
}

// fleetAppSet is one team's ApplicationSet: the plugin generator over the Workloads of its namespace,
// rendered with goTemplate or with Argo CD's default fasttemplate (flattened parameters).
func fleetAppSet(argoNS, team string, goTemplate bool) *unstructured.Unstructured {
	if !goTemplate {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
			"metadata": map[string]any{"namespace": argoNS, "name": team},
			"spec": map[string]any{
				"generators": []any{map[string]any{"plugin": map[string]any{
					"configMapRef": map[string]any{"name": "fleetbridge-plugin"},
					"input":        map[string]any{"parameters": map[string]any{"workloadNamespace": team}},
				}}},
				"syncPolicy": map[string]any{"preserveResourcesOnDeletion": true},
				"template": map[string]any{
					"metadata": map[string]any{"name": "{{workload.name}}-{{cluster.name}}"},
					"spec": map[string]any{
						"project":     "default",
						"source":      map[string]any{"repoURL": "{{workload.repoURL}}", "path": "{{workload.path}}", "targetRevision": "{{workload.targetRevision}}"},
						"destination": map[string]any{"name": "{{cluster.argocdName}}", "namespace": "{{workload.destinationNamespace}}"},
					},
				},
			},
		}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
		"metadata": map[string]any{"namespace": argoNS, "name": team},
		"spec": map[string]any{
			"goTemplate": true,
			"generators": []any{map[string]any{"plugin": map[string]any{
				"configMapRef": map[string]any{"name": "fleetbridge-plugin"},
				"input":        map[string]any{"parameters": map[string]any{"workloadNamespace": team}},
			}}},
			"syncPolicy": map[string]any{"preserveResourcesOnDeletion": true},
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

// metricValue sums the samples of a metric whose line contains match, from a Prometheus endpoint.
func metricValue(tb testing.TB, addr, name, match string) float64 {
	tb.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if (strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ")) && strings.Contains(line, match) {
			fields := strings.Fields(line)
			if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// appSetTotals are the reconcile count and seconds of every ApplicationSet.
func appSetTotals(tb testing.TB, addr string) (count, seconds float64) {
	n, secs, _ := appSetMetrics(tb, addr, "")
	return float64(n), secs
}

// waitReconcilesQuietAll waits until the ApplicationSet controller has been idle for quiet.
func waitReconcilesQuietAll(tb testing.TB, addr string, quiet time.Duration) {
	tb.Helper()
	since, last := time.Now(), -1.0
	deadline := time.Now().Add(15 * time.Minute)
	for time.Since(since) < quiet && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		n, _, idle := appSetMetrics(tb, addr, "")
		if float64(n) != last || !idle {
			last, since = float64(n), time.Now()
		}
	}
}
