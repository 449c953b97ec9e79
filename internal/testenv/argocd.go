package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ArgoCDSecretName is the Secret the controller reads plugin tokens from.
const ArgoCDSecretName = "argocd-secret"

// StartApplicationSetController prepares namespace like an Argo CD install (argocd-cm, argocd-secret with
// extra data, AppProject default) and starts Argo CD's real ApplicationSet controller as a process
// against the management server (recipe: ../shared/reference/testbed.md). The management server needs
// the Argo CD CRDs. Extra flags come after the defaults, which they override (--metrics-addr, --loglevel).
func (m *Management) StartApplicationSetController(ctx context.Context, namespace string, secretData map[string][]byte, extraArgs ...string) (*Process, error) {
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

	dir, kubeconfigPath, err := m.kubeconfigDir("fleetbridge-appset-")
	if err != nil {
		return nil, err
	}
	// The controller ignores --kubeconfig for its client; KUBECONFIG is what it reads.
	args := append([]string{"--namespace", namespace, "--metrics-addr", "0", "--probe-addr", "0",
		"--webhook-addr", "127.0.0.1:0", "--argocd-repo-server", "127.0.0.1:1", "--loglevel", "info"}, extraArgs...)
	return StartProcess(bin, args,
		[]string{"ARGOCD_BINARY_NAME=argocd-applicationset-controller", "KUBECONFIG=" + kubeconfigPath, "HOME=" + dir})
}

func createOrIgnore(ctx context.Context, m *Management, obj client.Object) error {
	if err := m.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("testenv: create %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

// kubeconfigDir is a new temporary directory holding the management server's admin kubeconfig, for a
// controller process (its HOME and state too).
func (m *Management) kubeconfigDir(prefix string) (dir, kubeconfigPath string, err error) {
	kubeconfig, err := m.KubeConfig()
	if err != nil {
		return "", "", err
	}
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", "", err
	}
	kubeconfigPath = filepath.Join(dir, "kubeconfig")
	return dir, kubeconfigPath, os.WriteFile(kubeconfigPath, kubeconfig, 0o600)
}
