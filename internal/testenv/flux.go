package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Flux modules whose CRDs the tests install, read from the module cache with `go mod download` (Flux
// ships its CRDs in its controllers' repositories, not in a module fleetbridge imports). Each is the
// newest version that downloads with go 1.26 and GOTOOLCHAIN=local: kustomize-controller and
// source-controller v1.10.0, flux-operator v0.59.0 and helm-controller's api v1.7 require go 1.27, and
// helm-controller v1.6.5 and v1.7.x are not on the module proxy. hack/flux-operator builds the same
// Flux Operator version.
const (
	FluxOperatorModule        = "github.com/controlplaneio-fluxcd/flux-operator@v0.58.1"
	KustomizeControllerModule = "github.com/fluxcd/kustomize-controller@v1.9.6"
	HelmControllerModule      = "github.com/fluxcd/helm-controller@v1.6.4"
	SourceControllerModule    = "github.com/fluxcd/source-controller@v1.9.6"
)

// FluxCRDPaths are the CRD directories of the given Flux modules (every kind each defines).
func FluxCRDPaths(modules ...string) ([]string, error) {
	var paths []string
	for _, module := range modules {
		dir, err := DownloadedModuleFile(module, filepath.Join("config", "crd", "bases"))
		if err != nil {
			return nil, err
		}
		paths = append(paths, dir)
	}
	return paths, nil
}

// FluxOperatorBinary is Flux Operator's controller built by `make flux-operator-bin`: $FLUX_OPERATOR_BINARY,
// else <repo>/bin/flux-operator.
func FluxOperatorBinary() (string, error) {
	path := os.Getenv("FLUX_OPERATOR_BINARY")
	if path == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		path = filepath.Join(root, "bin", "flux-operator")
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("testenv: Flux Operator binary not found at %s: run `make flux-operator-bin` (make test does it)", path)
	}
	return path, nil
}

// StartFluxOperator runs Flux Operator's real controller as a process against the management server,
// with its runtime namespace (created here), no web UI, no leader election and no metrics or probe
// listeners. The management server needs Flux Operator's CRDs, and the CRDs of whatever its ResourceSets
// render.
func (m *Management) StartFluxOperator(ctx context.Context, namespace string) (*Process, error) {
	bin, err := FluxOperatorBinary()
	if err != nil {
		return nil, err
	}
	if err := m.EnsureNamespace(ctx, namespace, nil); err != nil {
		return nil, err
	}
	dir, kubeconfigPath, err := m.kubeconfigDir("fleetbridge-flux-operator-")
	if err != nil {
		return nil, err
	}
	return StartProcess(bin,
		[]string{"--enable-leader-election=false", "--metrics-addr=0", "--health-addr=0", "--web-server-port=0",
			"--storage-path=" + dir, "--log-level=debug", "--log-encoding=console"},
		// Its client reads KUBECONFIG (there is no --kubeconfig flag); it refuses to run outside FIPS 140-3
		// mode, which its release builds (GOFIPS140=latest) turn on by default.
		[]string{"KUBECONFIG=" + kubeconfigPath, "RUNTIME_NAMESPACE=" + namespace, "HOME=" + dir, "GODEBUG=fips140=on"})
}
