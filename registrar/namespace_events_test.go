package registrar

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// A namespace event reconciles only the Clusters it can change: a namespace nothing selects calls no
// workload server, one a Flux Registration selects gets its Secrets, and one relabelled out of the
// selector, or deleted, loses them.
func TestNamespaceEventsReconcileOnlyAffectedClusters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := mgmt.Client
	const fluxLabel, barrierLabel, tenantLabel = "nsev.example.com/flux", "nsev.example.com/barrier", "nsev.example.com/tenant"
	must(t, mgmt.EnsureNamespace(ctx, "nsev-tenant-1", map[string]string{fluxLabel: "true"}))
	fleet := map[string]*testenv.Workload{}
	for _, name := range []string{"w1", "w2"} {
		w, err := mgmt.AddWorkload(ctx, "nsev-fleet", name, testenv.ClusterOptions{Labels: map[string]string{"nsev": "fleet"}})
		must(t, err)
		fleet[name] = w
	}
	// wb is the barrier's cluster: a Registration of its own writes its Flux Secrets.
	if _, err := mgmt.AddWorkload(ctx, "nsev-barrier", "wb", testenv.ClusterOptions{Labels: map[string]string{"nsev": "barrier"}}); err != nil {
		t.Fatal(err)
	}

	// One worker works the queue in order, which the barrier below relies on.
	rm := startManagerWith(t, func(o *Options) { o.Workers = 1 })
	defer rm.stop(t)

	fluxRegistration := func(name, clusters string, target fleetv1.FluxTarget) *fleetv1.Registration {
		return &fleetv1.Registration{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: fleetv1.RegistrationSpec{
				ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"nsev": clusters}},
				Flux:            &target,
				Credentials:     fleetv1.Credentials{ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-" + name}},
			},
		}
	}
	regs := []*fleetv1.Registration{
		fluxRegistration("nsev", "fleet", fleetv1.FluxTarget{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{fluxLabel: "true"}}}),
		fluxRegistration("nsev-barrier", "barrier", fleetv1.FluxTarget{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{barrierLabel: "true"}}}),
	}
	for _, reg := range regs {
		must(t, c.Create(ctx, reg))
	}

	fluxSecret := func(ns, cluster string) error {
		clusterNS := "nsev-fleet"
		if cluster == "wb" {
			clusterNS = "nsev-barrier"
		}
		return c.Get(ctx, types.NamespacedName{Namespace: ns, Name: clusterNS + "." + cluster + ".kubeconfig"}, &corev1.Secret{})
	}
	expectSecrets := func(t *testing.T, ns string, clusters ...string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, "Flux Secrets in "+ns, func() error {
			for _, cluster := range clusters {
				if err := fluxSecret(ns, cluster); err != nil {
					return err
				}
			}
			return nil
		})
	}
	expectNoSecrets := func(t *testing.T, ns string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, "no Secrets in "+ns, func() error {
			list := &corev1.SecretList{}
			if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
				return err
			}
			if len(list.Items) != 0 {
				return fmt.Errorf("%d Secrets left in %s", len(list.Items), ns)
			}
			return nil
		})
	}
	expectSecrets(t, "nsev-tenant-1", "w1", "w2")
	expectReady(t, ctx, "nsev", metav1.ConditionTrue, fleetv1.ReasonRegistered, 2, 2, 0)

	// barrier returns once every request queued before it has been reconciled, so the absence of calls
	// is checked without waiting out a time. A namespace nsev-barrier's Flux selector matches makes wb's
	// reconcile write a Secret there, so wb was reconciled after the namespace appeared. The first pass
	// leaves wb dequeued; the second queues it again behind every request already waiting, and the one
	// worker reconciles those first.
	barriers := 0
	barrierPass := func(t *testing.T) {
		t.Helper()
		barriers++
		ns := fmt.Sprintf("nsev-barrier-%d", barriers)
		must(t, mgmt.EnsureNamespace(ctx, ns, map[string]string{barrierLabel: "true"}))
		expectSecrets(t, ns, "wb")
	}
	barrier := func(t *testing.T) {
		t.Helper()
		barrierPass(t)
		barrierPass(t)
	}

	t.Run("an unrelated namespace calls no workload server", func(t *testing.T) {
		barrier(t) // the reconciles of the start-up are done
		rm.workloadRequests.reset()
		must(t, mgmt.EnsureNamespace(ctx, "nsev-unrelated", map[string]string{"app": "unrelated"}))
		barrier(t)
		for name, w := range fleet {
			if n := rm.workloadRequests.to(w.Server()); n != 0 {
				t.Errorf("creating an unrelated namespace (and the barrier's) made %d requests to %s's workload server", n, name)
			}
		}
	})

	t.Run("a namespace the Flux selector matches gets the Secrets", func(t *testing.T) {
		must(t, mgmt.EnsureNamespace(ctx, "nsev-tenant-2", map[string]string{fluxLabel: "true"}))
		expectSecrets(t, "nsev-tenant-2", "w1", "w2")
		if err := fluxSecret("nsev-tenant-2", "wb"); !apierrors.IsNotFound(err) {
			t.Fatalf("wb's Secret in nsev-tenant-2: %v, want NotFound (its Registration does not select the namespace)", err)
		}
	})

	t.Run("a namespace relabelled out of the selector loses its Secrets", func(t *testing.T) {
		ns := &corev1.Namespace{}
		must(t, c.Get(ctx, types.NamespacedName{Name: "nsev-tenant-2"}, ns))
		base := ns.DeepCopy()
		ns.Labels[fluxLabel] = "false"
		must(t, c.Patch(ctx, ns, client.MergeFrom(base)))
		expectNoSecrets(t, "nsev-tenant-2")
		expectSecrets(t, "nsev-tenant-1", "w1", "w2")
	})

	t.Run("a terminating namespace loses its Secrets", func(t *testing.T) {
		// The test bed runs no namespace controller: the namespace stays terminating, and only
		// fleetbridge removes what it wrote there.
		must(t, c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nsev-tenant-1"}}))
		expectNoSecrets(t, "nsev-tenant-1")
	})

	t.Run("a Cluster's namespace labelled into a namespaceSelector registers it", func(t *testing.T) {
		reg := fluxRegistration("nsev-tenant", "barrier", fleetv1.FluxTarget{Namespaces: []string{"nsev-listed"}})
		reg.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{tenantLabel: "wb"}}
		regs = append(regs, reg)
		must(t, c.Create(ctx, reg))
		// The listed namespace appears first; wb's namespace is not selected yet.
		must(t, mgmt.EnsureNamespace(ctx, "nsev-listed", nil))
		barrier(t)
		if err := fluxSecret("nsev-listed", "wb"); !apierrors.IsNotFound(err) {
			t.Fatalf("wb's Secret in nsev-listed before its namespace is selected: %v, want NotFound", err)
		}
		ns := &corev1.Namespace{}
		must(t, c.Get(ctx, types.NamespacedName{Name: "nsev-barrier"}, ns))
		base := ns.DeepCopy()
		ns.Labels[tenantLabel] = "wb"
		must(t, c.Patch(ctx, ns, client.MergeFrom(base)))
		expectSecrets(t, "nsev-listed", "wb")
	})

	for _, reg := range regs {
		must(t, client.IgnoreNotFound(c.Delete(ctx, reg)))
	}
	testenv.Eventually(t, 30*time.Second, "Registrations removed", func() error {
		for _, reg := range regs {
			if err := c.Get(ctx, client.ObjectKeyFromObject(reg), &fleetv1.Registration{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Registration %s: %v", reg.Name, err)
			}
		}
		return nil
	})
}
