package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

var (
	mgmt           *testenv.Management
	fleetbridgeBin string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	argoCRDs, err := testenv.ArgoCDCRDPaths()
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
	mgmt, err = testenv.StartManagement(testenv.Options{ExtraCRDPaths: argoCRDs})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = mgmt.Stop() }()
	return m.Run()
}

// process is a child process whose output is kept for failing tests.
type process struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
}

// startFleetbridge runs the built binary against the management server, as `make run` would.
func startFleetbridge(t *testing.T, args ...string) *process {
	t.Helper()
	kubeconfig, err := mgmt.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--metrics-bind-address=0", "--health-probe-bind-address=0"}, args...)
	cmd := exec.Command(fleetbridgeBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+path)
	p := &process{cmd: cmd, out: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	return p
}

func (p *process) stop() string {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return p.out.String()
}
