package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ApplicationSetController is Argo CD's real ApplicationSet controller running as a process against the
// management server (recipe: ../shared/reference/testbed.md).
type ApplicationSetController struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan error
}

// ArgoCDSecretName is the Secret the controller reads plugin tokens from.
const ArgoCDSecretName = "argocd-secret"

// StartApplicationSetController prepares namespace like an Argo CD install (argocd-cm, argocd-secret with
// extra data, AppProject default) and starts the controller. The management server needs the Argo CD CRDs.
func (m *Management) StartApplicationSetController(ctx context.Context, namespace string, secretData map[string][]byte) (*ApplicationSetController, error) {
	bin, err := ArgoCDBinary()
	if err != nil {
		return nil, err
	}
	if err := m.EnsureNamespace(ctx, namespace, nil); err != nil {
		return nil, err
	}
	partOf := map[string]string{"app.kubernetes.io/part-of": "argocd"}
	data := map[string][]byte{"server.secretkey": []byte("fleetbridge-test-secret-key")}
	for k, v := range secretData {
		data[k] = v
	}
	if err := createOrIgnore(ctx, m, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "argocd-cm", Labels: partOf}}); err != nil {
		return nil, err
	}
	if err := createOrIgnore(ctx, m, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: ArgoCDSecretName, Labels: partOf}, Data: data}); err != nil {
		return nil, err
	}
	project := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
		"metadata": map[string]any{"namespace": namespace, "name": "default"},
		"spec": map[string]any{
			"sourceRepos":              []any{"*"},
			"destinations":             []any{map[string]any{"server": "*", "namespace": "*", "name": "*"}},
			"clusterResourceWhitelist": []any{map[string]any{"group": "*", "kind": "*"}},
		},
	}}
	if err := m.Client.Create(ctx, project); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("testenv: create AppProject: %w", err)
	}

	kubeconfig, err := m.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "fleetbridge-appset-")
	if err != nil {
		return nil, err
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--namespace", namespace, "--metrics-addr", "0", "--probe-addr", "0",
		"--webhook-addr", "127.0.0.1:0", "--argocd-repo-server", "127.0.0.1:1", "--loglevel", "info")
	// The controller ignores --kubeconfig for its client; KUBECONFIG is what it reads.
	cmd.Env = append(os.Environ(), "ARGOCD_BINARY_NAME=argocd-applicationset-controller", "KUBECONFIG="+kubeconfigPath, "HOME="+dir)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testenv: start ApplicationSet controller: %w", err)
	}
	c := &ApplicationSetController{cmd: cmd, log: out, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// Stop ends the controller and returns its log, for failing tests to print.
func (c *ApplicationSetController) Stop() string {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	return c.log.String()
}

// Exited says whether the controller process has stopped on its own.
func (c *ApplicationSetController) Exited() bool {
	return c.cmd.ProcessState != nil
}

func createOrIgnore(ctx context.Context, m *Management, obj client.Object) error {
	if err := m.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("testenv: create %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}
