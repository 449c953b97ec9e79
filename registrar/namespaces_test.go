package registrar

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// A registrar confined to listed namespaces (the Helm chart's least-privilege RBAC) sees Clusters only
// in its cluster namespaces, and reports an output outside its Secret namespaces as NamespaceNotAllowed
// instead of failing on a Forbidden.
func TestConfinedNamespaces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := mgmt.Client
	for _, ns := range []string{"argocd-confined", "tenant-confined"} {
		must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	}
	labels := map[string]string{"fleetbridge-test": "confined"}
	inside := types.NamespacedName{Namespace: "fleet-confined", Name: "inside"}
	outside := types.NamespacedName{Namespace: "fleet-elsewhere", Name: "outside"}
	for _, key := range []types.NamespacedName{inside, outside} {
		_, err := mgmt.AddWorkload(ctx, key.Namespace, key.Name, testenv.ClusterOptions{Labels: labels})
		must(t, err)
	}
	rm := startManagerIn(t, Namespaces{Secrets: []string{"argocd-confined"}, Clusters: []string{"fleet-confined"}})
	defer rm.stop(t)

	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "confined"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: labels},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: "argocd-confined"},
			Flux:            &fleetv1.FluxTarget{Namespaces: []string{"tenant-confined"}},
			Credentials:     fleetv1.Credentials{ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-confined"}},
		},
	}
	must(t, c.Create(ctx, reg))
	defer func() { _ = c.Delete(ctx, reg) }()

	expectReady(t, ctx, "confined", metav1.ConditionFalse, fleetv1.ReasonPartiallyRegistered, 1, 0, 1)
	got := registration(t, ctx, "confined")
	if len(got.Status.Failures) != 1 || got.Status.Failures[0].Name != inside.Name || got.Status.Failures[0].Reason != fleetv1.ReasonNamespaceNotAllowed {
		t.Fatalf("failures = %+v, want %s with %s", got.Status.Failures, inside.Name, fleetv1.ReasonNamespaceNotAllowed)
	}
	expectEvent(t, ctx, inside.Name, fleetv1.ReasonNamespaceNotAllowed)
	list := &corev1.SecretList{}
	must(t, c.List(ctx, list, client.InNamespace("tenant-confined")))
	if len(list.Items) != 0 {
		t.Fatalf("%d Secrets written outside the allowed namespaces", len(list.Items))
	}

	// Without the Flux output the Registration is fully registered, and the Cluster outside the cluster
	// namespaces is never seen.
	base := got.DeepCopy()
	got.Spec.Flux = nil
	must(t, c.Patch(ctx, got, client.MergeFrom(base)))
	expectReady(t, ctx, "confined", metav1.ConditionTrue, fleetv1.ReasonRegistered, 1, 1, 0)
	testenv.Eventually(t, 10*time.Second, "one Argo CD secret", func() error {
		list := &corev1.SecretList{}
		if err := c.List(ctx, list, client.InNamespace("argocd-confined")); err != nil {
			return err
		}
		if len(list.Items) != 1 || list.Items[0].Name != argoSecretName(inside) {
			return fmt.Errorf("%d secrets in argocd-confined", len(list.Items))
		}
		return nil
	})
}
