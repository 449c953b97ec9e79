package registrar

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// A Registration restricted to namespaces gets RoleBindings there and no cluster-wide access; a token
// that expired while the controller was away is replaced using the CAPI credentials.
func TestNamespacedAccessAndExpiredTokenRecovery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "argocd-namespaced"
	must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	w, err := mgmt.AddWorkload(ctx, "fleet-ns", "tenant-1", testenv.ClusterOptions{Labels: map[string]string{"access": "namespaced"}})
	must(t, err)
	for _, name := range []string{"apps", "other"} {
		must(t, w.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	}
	key := types.NamespacedName{Namespace: "fleet-ns", Name: "tenant-1"}

	rm := startManager(t)
	defer rm.stop(t)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "namespaced"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"access": "namespaced"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: ns, Namespaces: []string{"apps"}},
			Credentials: fleetv1.Credentials{ClusterRole: "tenant-admin", TokenTTL: &metav1.Duration{Duration: time.Hour},
				ServiceAccount: fleetv1.ServiceAccountReference{Namespace: "default", Name: "argocd-tenant"}},
		},
	}
	// envtest runs no controller-manager, so aggregated roles such as "admin" stay empty: use a plain one.
	must(t, w.Client.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "tenant-admin"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}}))
	must(t, mgmt.Client.Create(ctx, reg))

	secretKey := types.NamespacedName{Namespace: ns, Name: argoSecretName(key)}
	var secret *corev1.Secret
	testenv.Eventually(t, 20*time.Second, "namespaced secret", func() error {
		s := &corev1.Secret{}
		if err := mgmt.Client.Get(ctx, secretKey, s); err != nil {
			return err
		}
		secret = s
		return nil
	})
	cfg, err := restConfigFromArgoSecret(secret)
	must(t, err)
	scoped, err := client.New(cfg, client.Options{})
	must(t, err)
	if err := scoped.List(ctx, &corev1.ConfigMapList{}, client.InNamespace("apps")); err != nil {
		t.Fatalf("the token cannot read its namespace: %v", err)
	}
	if err := scoped.List(ctx, &corev1.ConfigMapList{}, client.InNamespace("other")); !apierrors.IsForbidden(err) {
		t.Fatalf("the token reads a namespace it was not granted: %v", err)
	}
	crbs := &rbacv1.ClusterRoleBindingList{}
	must(t, w.Client.List(ctx, crbs, client.MatchingLabels{"fleetbridge.io/registration": "namespaced"}))
	if len(crbs.Items) != 0 {
		t.Fatalf("namespaced access created %d ClusterRoleBindings", len(crbs.Items))
	}

	// The controller was away past the token's expiry: the next reconcile mints a fresh one.
	old := bearerToken(t, secret)
	rm.clock.Advance(2 * time.Hour)
	reconcileCluster(t, ctx, rm, key)
	testenv.Eventually(t, 10*time.Second, "fresh token", func() error {
		s := &corev1.Secret{}
		if err := mgmt.Client.Get(ctx, secretKey, s); err != nil {
			return err
		}
		if bearerToken(t, s) == old {
			return fmt.Errorf("token not replaced")
		}
		return nil
	})

	// Widening to a second namespace adds its RoleBinding; deleting the Registration removes them all.
	base := registration(t, ctx, "namespaced")
	patched := base.DeepCopy()
	patched.Spec.ArgoCD.Namespaces = []string{"apps", "other"}
	must(t, mgmt.Client.Patch(ctx, patched, client.MergeFrom(base)))
	testenv.Eventually(t, 10*time.Second, "second RoleBinding", func() error {
		return w.Client.Get(ctx, types.NamespacedName{Namespace: "other", Name: "fleetbridge:argocd-tenant"}, &rbacv1.RoleBinding{})
	})
	must(t, mgmt.Client.Delete(ctx, patched))
	testenv.Eventually(t, 20*time.Second, "workload access removed", func() error {
		rbs := &rbacv1.RoleBindingList{}
		if err := w.Client.List(ctx, rbs, client.MatchingLabels{"fleetbridge.io/registration": "namespaced"}); err != nil {
			return err
		}
		sas := &corev1.ServiceAccountList{}
		if err := w.Client.List(ctx, sas, client.MatchingLabels{"fleetbridge.io/registration": "namespaced"}); err != nil {
			return err
		}
		if len(rbs.Items)+len(sas.Items) != 0 {
			return fmt.Errorf("%d RoleBindings and %d ServiceAccounts left", len(rbs.Items), len(sas.Items))
		}
		return nil
	})
}
