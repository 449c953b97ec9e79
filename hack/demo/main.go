// Command demo is the `make demo` program. It starts a real local management API server and two workload
// API servers (the internal/testenv test bed), creates two Cluster API clusters with their kubeconfig
// Secrets, a Registration and two Workloads, runs the fleetbridge binary against them, and prints what
// fleetbridge produced (credentials redacted) and how to reach it. It runs until Ctrl-C, or until it has
// printed with --exit-after-print, and stops and removes everything it started.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

type options struct {
	binary                                       string
	pluginAddr, metricsAddr, probeAddr, pageAddr string
	exitAfterPrint                               bool
	timeout                                      time.Duration
}

func main() {
	// The demo only drives the test bed; fleetbridge logs in its own process.
	ctrl.SetLogger(logr.Discard())
	var opts options
	flag.StringVar(&opts.binary, "fleetbridge-binary", "bin/fleetbridge", "fleetbridge binary to run (relative paths are from the repository root).")
	flag.StringVar(&opts.pluginAddr, "plugin-bind-address", "127.0.0.1:8090", "Address of fleetbridge's plugin server.")
	flag.StringVar(&opts.metricsAddr, "metrics-bind-address", "127.0.0.1:8080", "Address of fleetbridge's metrics endpoint.")
	flag.StringVar(&opts.probeAddr, "health-probe-bind-address", "127.0.0.1:8081", "Address of fleetbridge's /healthz and /readyz endpoints.")
	flag.StringVar(&opts.pageAddr, "fleet-page-bind-address", "127.0.0.1:8092", "Address of fleetbridge's fleet page.")
	flag.BoolVar(&opts.exitAfterPrint, "exit-after-print", false, "Print, clean up and exit instead of waiting for Ctrl-C (for tests).")
	flag.DurationVar(&opts.timeout, "timeout", 2*time.Minute, "How long to wait for fleetbridge to register the demo fleet.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, opts)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err != nil && interrupted:
		fmt.Fprintln(os.Stderr, "demo: interrupted; everything it started is stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run sets the fleet up, prints it and waits. Every resource is released by a defer, so an error at any
// step leaves no API server, process or file behind.
func run(ctx context.Context, opts options) error {
	bin, err := fleetbridgeBinary(opts.binary)
	if err != nil {
		return err
	}
	// fleetbridge would exit on a taken port, and the demo would only notice at its timeout.
	for _, l := range []struct{ flag, addr string }{
		{"plugin-bind-address", opts.pluginAddr}, {"metrics-bind-address", opts.metricsAddr}, {"health-probe-bind-address", opts.probeAddr},
		{"fleet-page-bind-address", opts.pageAddr},
	} {
		if err := checkFree(l.flag, l.addr); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "fleetbridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("starting the management API server (kube-apiserver, etcd, Cluster API and fleetbridge CRDs)")
	// Argo CD's CRDs, for the Applications the demo writes as Argo CD would (its controllers do not run).
	argoCRDs, err := testenv.ArgoCDCRDPaths()
	if err != nil {
		return err
	}
	mgmt, err := testenv.StartManagement(testenv.Options{ExtraCRDPaths: argoCRDs})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the API servers")
		if err := mgmt.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: stop API servers:", err)
		}
	}()
	if err := createFleet(ctx, mgmt); err != nil {
		return err
	}

	files, token, err := writeAccessFiles(dir, mgmt)
	if err != nil {
		return err
	}
	step("starting %s", bin)
	fb, err := testenv.StartProcess(bin, []string{
		"--plugin-bind-address=" + opts.pluginAddr,
		"--metrics-bind-address=" + opts.metricsAddr,
		"--health-probe-bind-address=" + opts.probeAddr,
		"--fleet-page-bind-address=" + opts.pageAddr,
	}, []string{"KUBECONFIG=" + files.kubeconfig, "FLEETBRIDGE_PLUGIN_TOKEN=" + token})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping fleetbridge")
		fb.Stop()
	}()

	plugin := pluginClient{baseURL: "http://" + opts.pluginAddr, token: token}
	start := time.Now()
	if err := waitRegistered(ctx, mgmt.Client, plugin, opts.timeout); err != nil {
		return fmt.Errorf("%w\n--- last lines of fleetbridge's output ---\n%s", err, tail(fb.Output(), 40))
	}
	step("fleetbridge registered the fleet in %.1fs", time.Since(start).Seconds())
	if err := writeApplications(ctx, mgmt.Client); err != nil {
		return err
	}
	if err := printReport(ctx, os.Stdout, mgmt.Client, plugin, opts, files, token); err != nil {
		return err
	}
	if opts.exitAfterPrint {
		return nil
	}
	fmt.Println("Press Ctrl-C to stop.")
	<-ctx.Done()
	fmt.Fprintln(os.Stderr)
	return nil
}

// accessFiles are what a user needs to reach the demo, written 0600 into the demo's temporary directory.
type accessFiles struct {
	kubeconfig  string // admin kubeconfig of the management server
	pluginToken string // the plugin's bearer token, so it is never printed
}

func writeAccessFiles(dir string, mgmt *testenv.Management) (accessFiles, string, error) {
	files := accessFiles{kubeconfig: filepath.Join(dir, "kubeconfig"), pluginToken: filepath.Join(dir, "plugin-token")}
	kubeconfig, err := mgmt.KubeConfig()
	if err != nil {
		return files, "", err
	}
	if err := os.WriteFile(files.kubeconfig, kubeconfig, 0o600); err != nil {
		return files, "", err
	}
	// A fresh token per run: the plugin port is reachable by every local user while the demo runs.
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return files, "", err
	}
	token := hex.EncodeToString(raw)
	return files, token, os.WriteFile(files.pluginToken, []byte(token), 0o600)
}

func fleetbridgeBinary(path string) (string, error) {
	// The test bed reads the CRDs from the repository too, so the demo needs it even for an absolute path.
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("%w: run the demo from inside the fleetbridge repository (make demo)", err)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(root, path)
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("fleetbridge binary not found at %s: run `make build` (make demo does it)", path)
	}
	return path, nil
}

// checkFree fails when addr is taken; "0" is controller-runtime's "disabled".
func checkFree(flagName, addr string) error {
	if addr == "" || addr == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (%w): pass a free address with --%s", addr, err, flagName)
	}
	return ln.Close()
}

// step reports progress on stderr, keeping stdout for the report.
func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	if strings.TrimSpace(s) == "" {
		return "(no output yet)"
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
