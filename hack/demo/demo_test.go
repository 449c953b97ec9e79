package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetbridge/fleetbridge/internal/fleet"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// `make demo`'s program, run as the README's first command would run it but with --exit-after-print,
// prints both clusters, the plugin's pairs and the endpoints; prints no credential; and leaves nothing
// behind.
func TestDemoPrintsTheFleetWithoutCredentials(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	fleetbridgeBin := filepath.Join(root, "bin", "fleetbridge")
	if _, err := os.Stat(fleetbridgeBin); err != nil {
		t.Fatalf("%s is missing: run `make build` (make test does it)", fleetbridgeBin)
	}
	demoBin := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command("go", "build", "-o", demoBin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the demo: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pluginAddr, pageAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cmd := exec.CommandContext(ctx, demoBin, "--exit-after-print", "--timeout=2m",
		"--fleetbridge-binary="+fleetbridgeBin, "--plugin-bind-address="+pluginAddr,
		"--metrics-bind-address="+testenv.FreeAddr(t), "--health-probe-bind-address="+testenv.FreeAddr(t),
		"--fleet-page-bind-address="+pageAddr)
	// On timeout the demo gets SIGTERM, as from Ctrl-C, so it still stops its API servers.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	outBytes, err := cmd.CombinedOutput()
	out := string(outBytes)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}

	want := []string{
		"Argo CD cluster Secrets", "Flux kubeconfig Secrets", "<redacted>", `"parameters"`,
		"http://" + pluginAddr + "/api/v1/getparams.execute", "/metrics", "export KUBECONFIG=",
		"Fleet page (what runs where): http://" + pageAddr + "/",
		"fleet/edge-us Degraded: Degraded: Deployment podinfo exceeded its progress deadline",
		"all 2 clusters healthy at 6.8.0",
	}
	for _, c := range demoClusters {
		want = append(want,
			"name:    "+capiNamespace+"."+c.name, // the Argo CD cluster name
			fluxNamespace+"/"+capiNamespace+"."+c.name+".kubeconfig")
		for _, w := range demoWorkloads {
			want = append(want, fleet.PairName(workloadNamespace, w, capiNamespace, c.name))
		}
	}
	for _, s := range want {
		if !strings.Contains(out, s) {
			t.Errorf("the output lacks %q", s)
		}
	}
	// The test cannot know the minted tokens; ServiceAccount tokens are JWTs, and keys are PEM.
	if jwt := regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.`).FindString(out); jwt != "" {
		t.Errorf("the output contains a JWT: %.20s...", jwt)
	}
	if strings.Contains(out, "BEGIN ") {
		t.Error("the output contains a PEM block")
	}
	if m := regexp.MustCompile(`export KUBECONFIG=(\S+)`).FindStringSubmatch(out); m != nil {
		if _, err := os.Stat(filepath.Dir(m[1])); !os.IsNotExist(err) {
			t.Errorf("the demo's temporary directory %s is still there (stat: %v)", filepath.Dir(m[1]), err)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", out)
	}
}
