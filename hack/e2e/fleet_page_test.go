package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// The fleet page, served by the running binary against the test bed and driven by real headless
// Chromium (Debian's chromium, through chromedp): the grid shows each pair's state as colour and text;
// a cluster whose API server goes away shows as unreachable within 5 s, without a reload; the cluster
// view shows its facts. No Argo CD controller runs: the test writes the Applications an ApplicationSet
// and Argo CD's application controller would. A screenshot goes to bin/fleet-page.png for review.
func TestFleetPageInChromium(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := mgmt.Client
	const capiNS, argoNS, appsNS = "fleet-page", "argocd-page", "page-apps"
	labels := map[string]string{"e2e": "page", "region": "eu"}
	_, err := mgmt.AddWorkload(ctx, capiNS, "edge-1", testenv.ClusterOptions{Labels: labels})
	must(t, err)
	down, err := mgmt.AddWorkload(ctx, capiNS, "edge-2", testenv.ClusterOptions{Labels: labels})
	must(t, err)
	must(t, mgmt.EnsureNamespace(ctx, argoNS, nil))
	must(t, mgmt.EnsureNamespace(ctx, appsNS, nil))
	must(t, c.Create(ctx, &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "page-fleet"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"e2e": "page"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: argoNS},
			Credentials:     fleetv1.Credentials{ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-page-e2e"}},
		},
	}))
	for _, name := range []string{"api", "web"} {
		w := &fleetv1.Workload{
			ObjectMeta: metav1.ObjectMeta{Namespace: appsNS, Name: name},
			Spec: fleetv1.WorkloadSpec{
				ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"e2e": "page"}},
				Registration:    "page-fleet",
				Source:          fleetv1.WorkloadSource{RepoURL: "https://git.example.com/" + name, Path: "deploy", TargetRevision: "main"},
				Destination:     fleetv1.WorkloadDestination{Namespace: name},
			},
		}
		if name == "web" {
			w.Spec.Overrides = []fleetv1.WorkloadOverride{{ClusterSelector: metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
				Values: &apiextensionsv1.JSON{Raw: []byte(`{"replicas": 3}`)}}}
		}
		must(t, c.Create(ctx, w))
	}
	// web runs healthy on edge-1 and degraded on edge-2; api has an Application on edge-1 only.
	for _, a := range []struct{ workload, cluster, health, message string }{
		{"web", "edge-1", "Healthy", ""}, {"web", "edge-2", "Degraded", "Deployment web exceeded its progress deadline"}, {"api", "edge-1", "Progressing", "waiting for rollout"},
	} {
		must(t, c.Create(ctx, pageApplication(argoNS, a.workload+"-"+a.cluster, fleet.PairName(appsNS, a.workload, capiNS, a.cluster), a.health, a.message)))
	}

	pageAddr := testenv.FreeAddr(t)
	fb := startFleetbridge(t, testenv.FreeAddr(t), "--resync=2s", "--fleet-page-bind-address="+pageAddr, "--argocd-url=https://argocd.example.com")
	defer func() {
		if out := fb.Stop(); t.Failed() {
			t.Logf("fleetbridge log:\n%s", tail(out, 60))
		}
	}()

	browser, stop := startChromium(t)
	defer stop()
	must(t, chromedp.Do(browser, chromedp.Navigate("http://"+pageAddr+"/")))
	cellOf := func(cluster, workload string) string {
		return fmt.Sprintf(`(() => { const t = document.getElementById("grid");
			const col = [...t.tHead.rows[0].cells].findIndex(c => c.textContent === %q);
			const row = t.querySelector('tr[data-cluster="%s"]');
			if (col < 0 || !row) return "";
			const cell = row.cells[col];
			return cell.className + " | " + cell.textContent.trim() + " | " + cell.title + " | " + (cell.querySelector("a") ? cell.querySelector("a").href : ""); })()`,
			appsNS+"/"+workload, capiNS+"/"+cluster)
	}
	waitJS := func(what, expr string, within time.Duration, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(within)
		var got string
		for {
			var err error
			if got, err = chromedp.Run(browser, chromedp.Evaluate[string](expr)); err == nil && ok(got) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q (%v) after %s", what, got, err, within)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The registrar registers both clusters, and the page shows every pair (the grid polls every 2 s).
	for _, want := range []struct{ cluster, workload, cell string }{
		{"edge-1", "web", "cell healthy | Healthy |  | https://argocd.example.com/applications/" + argoNS + "/web-edge-1"},
		{"edge-2", "web", "cell degraded | Degraded | Degraded: Deployment web exceeded its progress deadline | https://argocd.example.com/applications/" + argoNS + "/web-edge-2"},
		{"edge-1", "api", "cell progressing | Progressing | Progressing: waiting for rollout | https://argocd.example.com/applications/" + argoNS + "/api-edge-1"},
		{"edge-2", "api", "cell outofsync | OutOfSync | not generated yet | "},
	} {
		waitJS("the cell "+want.cluster+" x "+want.workload, cellOf(want.cluster, want.workload), time.Minute, func(s string) bool { return s == want.cell })
	}
	screenshot(t, browser, "fleet-page.png")

	// edge-2's API server goes away: its row says so within 5 s of the registrar's finding, without a
	// reload.
	must(t, down.Stop())
	testenv.Eventually(t, 30*time.Second, "the registrar marks edge-2 unreachable", func() error {
		for _, s := range argoSecretsOfIn(t, ctx, argoNS, capiNS, "edge-2") {
			if s.Annotations["fleetbridge.io/reachable"] == "false" {
				return nil
			}
		}
		return fmt.Errorf("edge-2's Secret is not marked unreachable yet")
	})
	marked := time.Now()
	row := fmt.Sprintf(`(() => { const r = document.querySelector('tr[data-cluster="%s/edge-2"]'); return r ? r.className + " | " + r.cells[0].textContent : ""; })()`, capiNS)
	waitJS("edge-2's row unreachable", row, 5*time.Second, func(s string) bool {
		return strings.HasPrefix(s, "unreachable | ") && strings.Contains(s, "unreachable")
	})
	t.Logf("the page showed edge-2 unreachable %.1fs after the registrar marked it", time.Since(marked).Seconds())

	// The cluster view, opened from the grid.
	must(t, chromedp.Do(browser, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-cluster="%s/edge-1"] th a`, capiNS)))))
	view := waitJS("edge-1's view", `document.getElementById("cluster") ? document.getElementById("cluster").innerText : ""`, 10*time.Second,
		func(s string) bool { return strings.Contains(s, "page-fleet") })
	for _, want := range []string{"Registered", "v1.", "region=eu", "Token expires", "page-fleet (credentials: ServiceAccountToken)", "the API server answered"} {
		if !strings.Contains(view, want) {
			t.Fatalf("the cluster view lacks %q:\n%s", want, view)
		}
	}
	screenshot(t, browser, "fleet-page-cluster.png")

	// The Workload view, opened from the grid's column: the clusters' states, the overrides that
	// matched, the revisions and the clusters that are not healthy.
	must(t, chromedp.Do(browser, chromedp.Navigate("http://"+pageAddr+"/")))
	must(t, chromedp.Do(browser, chromedp.Click(chromedp.CSS(`th.workload a[href="/workloads/`+appsNS+`/web"]`))))
	summary := waitJS("web's view", `document.getElementById("summary") ? document.getElementById("summary").innerText : ""`, 10*time.Second,
		func(s string) bool { return strings.HasPrefix(s, capiNS+"/edge-2 Degraded") })
	var rows string
	rows, err = chromedp.Run(browser, chromedp.Evaluate[string](`[...document.querySelectorAll("#clusters tbody tr")].map(r => r.innerText.replace(/\t/g, " | ")).join("\n")`))
	must(t, err)
	for _, want := range []string{capiNS + "/edge-1 | Healthy | 0f1e2d3c | #0", capiNS + "/edge-2 | Degraded | 0f1e2d3c | #0"} {
		if !strings.Contains(rows, want) {
			t.Fatalf("web's view (%q) lacks the row %q:\n%s", summary, want, rows)
		}
	}
}

// startChromium starts headless Chromium (Debian's package, found on PATH) for chromedp.
func startChromium(t *testing.T) (context.Context, func()) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.NoSandbox, chromedp.WindowSize(1400, 900))
	if path := os.Getenv("CHROMIUM"); path != "" {
		opts = append(opts, chromedp.ExecPath(path))
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	return browser, func() { cancelBrowser(); cancelAlloc() }
}

// screenshot saves the page as a PNG (quality 100 is PNG in chromedp) under the repository's bin/, for review.
func screenshot(t *testing.T, browser context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	must(t, err)
	root, err := testenv.RepoRoot()
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "bin", name), png, 0o644))
}

// pageApplication is an Application as an ApplicationSet generates it, with the pair label, and the
// status Argo CD's application controller writes.
func pageApplication(namespace, name, pair, health, message string) *unstructured.Unstructured {
	h := map[string]any{"status": health}
	if message != "" {
		h["message"] = message
	}
	sync := "Synced"
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"namespace": namespace, "name": name, "labels": map[string]any{"fleetbridge.io/pair": pair}},
		"spec": map[string]any{
			"project":     "default",
			"source":      map[string]any{"repoURL": "https://git.example.com/app", "path": "deploy", "targetRevision": "main"},
			"destination": map[string]any{"name": "somewhere", "namespace": "app"},
		},
		"status": map[string]any{"sync": map[string]any{"status": sync, "revision": "0f1e2d3c"}, "health": h},
	}}
}
