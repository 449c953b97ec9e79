package registrar

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// In Kubeconfig mode the CAPI credentials are converted into Argo CD's config and follow every rewrite
// of the CAPI kubeconfig Secret (kubeadm re-issuing its client certificate, EKS/GKE refreshing tokens).
func TestKubeconfigModeFollowsCAPIRewrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "argocd-kubeconfig-mode"
	must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	w, err := mgmt.AddWorkload(ctx, "fleet-kc", "kc-1", testenv.ClusterOptions{Labels: map[string]string{"mode": "kubeconfig"}})
	must(t, err)
	key := types.NamespacedName{Namespace: "fleet-kc", Name: "kc-1"}

	rm := startManager(t)
	defer rm.stop(t)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeconfig-mode"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"mode": "kubeconfig"}},
			ArgoCD: &fleetv1.ArgoCDTarget{Namespace: ns, NameTemplate: "capi-{{ .Name }}",
				Namespaces: []string{"default", "apps"}, ClusterResources: true},
			Credentials: fleetv1.Credentials{Mode: fleetv1.CredentialsKubeconfig},
		},
	}
	must(t, mgmt.Client.Create(ctx, reg))

	secretKey := types.NamespacedName{Namespace: ns, Name: argoSecretName(key)}
	var first argocd.ClusterConfig
	testenv.Eventually(t, 20*time.Second, "kubeconfig-mode secret", func() error {
		s := &corev1.Secret{}
		if err := mgmt.Client.Get(ctx, secretKey, s); err != nil {
			return err
		}
		cfg, err := argocd.ParseConfig(s.Data["config"])
		if err != nil {
			return err
		}
		if len(cfg.TLSClientConfig.CertData) == 0 || len(cfg.TLSClientConfig.KeyData) == 0 || len(cfg.TLSClientConfig.CAData) == 0 {
			return fmt.Errorf("config lacks certData/keyData/caData")
		}
		if string(s.Data["name"]) != "capi-kc-1" || string(s.Data["namespaces"]) != "default,apps" || string(s.Data["clusterResources"]) != "true" {
			return fmt.Errorf("data = name %q namespaces %q clusterResources %q", s.Data["name"], s.Data["namespaces"], s.Data["clusterResources"])
		}
		expectTokenWorks(t, ctx, s, true)
		first = cfg
		return nil
	})
	writeFixtures(t, ctx, ns)

	// Cluster API re-issues the admin client certificate: the Argo CD secret follows.
	user, err := w.Env.ControlPlane.AddUser(envtest.User{Name: "kc-1-admin-2", Groups: []string{"system:masters"}}, nil)
	must(t, err)
	rotated, err := user.KubeConfig()
	must(t, err)
	must(t, mgmt.WriteKubeconfigSecret(ctx, key.Namespace, key.Name, rotated))
	testenv.Eventually(t, 20*time.Second, "rotated certificate", func() error {
		s := &corev1.Secret{}
		if err := mgmt.Client.Get(ctx, secretKey, s); err != nil {
			return err
		}
		cfg, err := argocd.ParseConfig(s.Data["config"])
		if err != nil {
			return err
		}
		if bytes.Equal(cfg.TLSClientConfig.CertData, first.TLSClientConfig.CertData) {
			return fmt.Errorf("certificate not rotated yet")
		}
		expectTokenWorks(t, ctx, s, true)
		return nil
	})

	must(t, mgmt.Client.Delete(ctx, reg))
	testenv.Eventually(t, 20*time.Second, "secret removed", func() error {
		list := &corev1.SecretList{}
		if err := mgmt.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(list.Items) != 0 {
			return fmt.Errorf("%d secrets left", len(list.Items))
		}
		return nil
	})
}
