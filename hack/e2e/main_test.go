package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

var (
	mgmt           *testenv.Management
	fleetbridgeBin string
)

func TestMain(m *testing.M) {
	// This process only drives the test; fleetbridge and Argo CD log in their own processes.
	ctrl.SetLogger(logr.Discard())
	os.Exit(run(m))
}

func run(m *testing.M) int {
	argoCRDs, err := testenv.ArgoCDCRDPaths()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Flux Operator's CRDs, and the Kustomization its ResourceSets render in the Flux test.
	fluxCRDs, err := testenv.FluxCRDPaths(testenv.FluxOperatorModule, testenv.KustomizeControllerModule)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "fleetbridge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fleetbridgeBin = filepath.Join(dir, "fleetbridge")
	build := exec.Command("go", "build", "-o", fleetbridgeBin, "./cmd/fleetbridge")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fleetbridge: %v\n%s", err, out)
		return 1
	}
	return testenv.RunMain(m, testenv.Options{ExtraCRDPaths: append(argoCRDs, fluxCRDs...)}, &mgmt)
}

// pluginToken is the bearer token the plugin server accepts in these tests.
const pluginToken = "e2e-plugin-token"

// startFleetbridge runs the built binary against the management server, as `make run` would, with the
// plugin server on pluginAddr.
func startFleetbridge(t *testing.T, pluginAddr string, args ...string) *testenv.Process {
	t.Helper()
	kubeconfig, err := mgmt.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--metrics-bind-address=0", "--health-probe-bind-address=0", "--plugin-bind-address=" + pluginAddr,
		"--fleet-page-bind-address=" + testenv.FreeAddr(t)}, args...)
	p, err := testenv.StartProcess(fleetbridgeBin, args, []string{"KUBECONFIG=" + path, "FLEETBRIDGE_PLUGIN_TOKEN=" + pluginToken})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
