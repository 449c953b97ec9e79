package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// RepoRoot is the directory holding fleetbridge's go.mod, found by walking up from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(data), []byte("module github.com/fleetbridge/fleetbridge\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testenv: no fleetbridge go.mod above the working directory")
		}
		dir = parent
	}
}

// BinaryAssetsDir is where kube-apiserver and etcd are: $KUBEBUILDER_ASSETS, else <repo>/bin/k8s.
func BinaryAssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin", "k8s")
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("testenv: %s not found in %s: run `make envtest-assets` (make test does it)", name, dir)
		}
	}
	return dir, nil
}

var moduleDirs sync.Map

// ModuleDir is the module cache directory of a dependency of the main module, so tests can load the
// CRDs that ship inside it without committing copies.
func ModuleDir(module string) (string, error) { return ModuleDirIn("", module) }

// ModuleDirIn is ModuleDir for a dependency of the Go module at <repo>/<moduleRoot> (for example
// hack/conformance, which pins Argo CD).
func ModuleDirIn(moduleRoot, module string) (string, error) {
	if dir, ok := moduleDirs.Load(moduleRoot + "|" + module); ok {
		return dir.(string), nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = filepath.Join(root, moduleRoot)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("testenv: go list -m %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("testenv: module %s is not downloaded", module)
	}
	moduleDirs.Store(moduleRoot+"|"+module, dir)
	return dir, nil
}

// ArgoCDCRDPaths are the Application, ApplicationSet and AppProject CRDs of the Argo CD version under
// test, read from the module cache: v2 as hack/conformance pins it, or, when ARGOCD_MODULE_ROOT and
// ARGOCD_MODULE name another module (hack/argocd-v3, github.com/argoproj/argo-cd/v3), that one.
func ArgoCDCRDPaths() ([]string, error) {
	root, module := filepath.Join("hack", "conformance"), "github.com/argoproj/argo-cd/v2"
	if os.Getenv("ARGOCD_MODULE") != "" {
		root, module = os.Getenv("ARGOCD_MODULE_ROOT"), os.Getenv("ARGOCD_MODULE")
	}
	dir, err := ModuleDirIn(root, module)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range []string{"application-crd.yaml", "applicationset-crd.yaml", "appproject-crd.yaml"} {
		out = append(out, filepath.Join(dir, "manifests", "crds", name))
	}
	return out, nil
}

// ArgoCDBinary is Argo CD's multi-call binary built by `make argocd-bin`: $ARGOCD_BINARY, else <repo>/bin/argocd.
func ArgoCDBinary() (string, error) {
	path := os.Getenv("ARGOCD_BINARY")
	if path == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		path = filepath.Join(root, "bin", "argocd")
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("testenv: Argo CD binary not found at %s: run `make argocd-bin` (make test does it)", path)
	}
	return path, nil
}

// CRDPaths are the CRD files the management server installs: fleetbridge's own, the Cluster API
// Cluster and ClusterClass CRDs from the cluster-api module, and SIG Multicluster's ClusterProfile.
func CRDPaths() ([]string, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	capi, err := ModuleDir("sigs.k8s.io/cluster-api")
	if err != nil {
		return nil, err
	}
	capiCRDs := filepath.Join(capi, "core", "config", "crd", "bases")
	return []string{
		filepath.Join(root, "config", "crd", "bases"),
		filepath.Join(capiCRDs, "cluster.x-k8s.io_clusters.yaml"),
		filepath.Join(capiCRDs, "cluster.x-k8s.io_clusterclasses.yaml"),
		filepath.Join(root, "hack", "crds", "clusterprofile"),
	}, nil
}

// DownloadedModuleFile is a file inside a Go module fetched into the module cache by `go mod download`,
// for CRDs that ship in a project's repository but not in any module fleetbridge depends on (Prometheus
// Operator's ServiceMonitor). The module is not added to any go.mod.
func DownloadedModuleFile(moduleVersion, rel string) (string, error) {
	if dir, ok := moduleDirs.Load("download|" + moduleVersion); ok {
		return filepath.Join(dir.(string), rel), nil
	}
	cmd := exec.Command("go", "mod", "download", "-json", moduleVersion)
	cmd.Dir = os.TempDir() // outside every module: nothing is resolved against a go.mod
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("testenv: go mod download %s: %w\n%s", moduleVersion, err, out)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("testenv: go mod download %s: %s", moduleVersion, strings.TrimSpace(info.Error+" "+fmt.Sprint(err)))
	}
	moduleDirs.Store("download|"+moduleVersion, info.Dir)
	path := filepath.Join(info.Dir, rel)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("testenv: %s has no %s", moduleVersion, rel)
	}
	return path, nil
}
