package registrar

import (
	"context"
	"fmt"
	"testing"
	"time"

	fluxclient "github.com/fluxcd/pkg/runtime/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/flux"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// Flux Secrets land in every target namespace, Flux's own client code reaches the right workload server
// through each, one token serves Flux and Argo CD and rotates in all of them at once, and dropping a
// namespace removes only its Secrets.
func TestFluxKubeconfigSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := mgmt.Client
	for _, ns := range []string{"tenant-a", "tenant-b", "argocd-flux"} {
		must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	}
	workloads := map[types.NamespacedName]*testenv.Workload{}
	for _, name := range []string{"f1", "f2"} {
		w, err := mgmt.AddWorkload(ctx, "fleet-flux", name, testenv.ClusterOptions{Labels: map[string]string{"gitops": "flux", "tier": "gold"}})
		must(t, err)
		workloads[types.NamespacedName{Namespace: "fleet-flux", Name: name}] = w
	}
	rm := startManager(t)
	defer rm.stop(t)

	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "flux"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"gitops": "flux"}},
			Labels:          fleetv1.LabelPolicy{Propagate: []string{"tier"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: "argocd-flux"},
			Flux:            &fleetv1.FluxTarget{Namespaces: []string{"tenant-a", "tenant-b"}},
			Credentials: fleetv1.Credentials{TokenTTL: &metav1.Duration{Duration: time.Hour},
				ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-flux"}},
		},
	}
	must(t, c.Create(ctx, reg))

	fluxSecret := func(ns, cluster string) (*corev1.Secret, error) {
		s := &corev1.Secret{}
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fleet-flux." + cluster + ".kubeconfig"}, s)
		return s, err
	}
	tokens := func(key types.NamespacedName, namespaces ...string) ([]string, error) {
		argo := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "argocd-flux", Name: argoSecretName(key)}, argo); err != nil {
			return nil, err
		}
		cfg, err := argocd.ParseConfig(argo.Data["config"])
		if err != nil {
			return nil, err
		}
		out := []string{cfg.BearerToken}
		for _, ns := range namespaces {
			s, err := fluxSecret(ns, key.Name)
			if err != nil {
				return nil, err
			}
			out = append(out, flux.Token(s.Data["value"]))
		}
		return out, nil
	}
	sameToken := func(key types.NamespacedName, namespaces ...string) (string, error) {
		all, err := tokens(key, namespaces...)
		if err != nil {
			return "", err
		}
		for _, tok := range all {
			if tok == "" || tok != all[0] {
				return "", fmt.Errorf("outputs carry different tokens")
			}
		}
		return all[0], nil
	}
	testenv.Eventually(t, 20*time.Second, "Flux and Argo CD secrets", func() error {
		for key := range workloads {
			if _, err := sameToken(key, "tenant-a", "tenant-b"); err != nil {
				return err
			}
		}
		return nil
	})

	for key, w := range workloads {
		kubeSystem := &corev1.Namespace{}
		must(t, w.Client.Get(ctx, types.NamespacedName{Name: "kube-system"}, kubeSystem))
		for _, ns := range []string{"tenant-a", "tenant-b"} {
			s, err := fluxSecret(ns, key.Name)
			must(t, err)
			if s.Labels[flux.WatchLabel] != flux.WatchEnabled || s.Labels["tier"] != "gold" || s.Labels[owned.LabelOutput] != owned.OutputFlux {
				t.Fatalf("labels of %s/%s: %v", ns, s.Name, s.Labels)
			}
			// What a Kustomization in ns with spec.kubeConfig.secretRef would do, with Flux's own code.
			ref := flux.KubeConfigRef(s.Name)
			imp := fluxclient.NewImpersonator(c, fluxclient.WithScheme(mgmt.Scheme),
				fluxclient.WithKubeConfig(&ref, fluxclient.KubeConfigOptions{}, ns, nil))
			remote, _, err := imp.GetClient(ctx)
			if err != nil {
				t.Fatalf("Flux cannot build a client from %s/%s: %v", ns, s.Name, err)
			}
			got := &corev1.Namespace{}
			if err := remote.Get(ctx, types.NamespacedName{Name: "kube-system"}, got); err != nil {
				t.Fatalf("Flux client from %s/%s cannot read namespaces: %v", ns, s.Name, err)
			}
			if got.UID != kubeSystem.UID {
				t.Fatalf("%s/%s reaches the wrong workload server", ns, s.Name)
			}
		}
	}

	t.Run("rotation updates every output with one token", func(t *testing.T) {
		key := types.NamespacedName{Namespace: "fleet-flux", Name: "f1"}
		old, err := sameToken(key, "tenant-a", "tenant-b")
		must(t, err)
		rm.clock.Advance(pastRenewal)
		reconcileCluster(t, ctx, rm, key)
		testenv.Eventually(t, 10*time.Second, "rotated everywhere", func() error {
			now, err := sameToken(key, "tenant-a", "tenant-b")
			if err != nil {
				return err
			}
			if now == old {
				return fmt.Errorf("not rotated")
			}
			return nil
		})
		// The old token still works: bound tokens only stop at their expiry, long after every Secret
		// carries the new one, so no Flux reconcile sees a dead token.
		s, err := fluxSecret("tenant-a", "f1")
		must(t, err)
		cfg, err := fluxclient.KubeConfigFromBytes(s.Data["value"])
		must(t, err)
		cfg.BearerToken = old
		oldClient, err := client.New(cfg, client.Options{})
		must(t, err)
		if err := oldClient.List(ctx, &corev1.NamespaceList{}); err != nil {
			t.Fatalf("the previous token stopped working at rotation: %v", err)
		}
	})

	t.Run("a namespace selector adds namespaces as they appear", func(t *testing.T) {
		base := registration(t, ctx, "flux")
		patched := base.DeepCopy()
		patched.Spec.Flux.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"fleetbridge.io/flux-tenant": "true"}}
		must(t, c.Patch(ctx, patched, client.MergeFrom(base)))
		must(t, mgmt.EnsureNamespace(ctx, "tenant-c", map[string]string{"fleetbridge.io/flux-tenant": "true"}))
		testenv.Eventually(t, 20*time.Second, "tenant-c secrets", func() error {
			for key := range workloads {
				if _, err := sameToken(key, "tenant-a", "tenant-b", "tenant-c"); err != nil {
					return err
				}
			}
			return nil
		})
		// Dropping the selector removes tenant-c's Secrets again.
		base = registration(t, ctx, "flux")
		patched = base.DeepCopy()
		patched.Spec.Flux.NamespaceSelector = nil
		must(t, c.Patch(ctx, patched, client.MergeFrom(base)))
		testenv.Eventually(t, 20*time.Second, "tenant-c secrets removed", func() error {
			list := &corev1.SecretList{}
			if err := c.List(ctx, list, client.InNamespace("tenant-c")); err != nil {
				return err
			}
			if len(list.Items) != 0 {
				return fmt.Errorf("%d secrets left in tenant-c", len(list.Items))
			}
			return nil
		})
	})

	t.Run("dropping a namespace removes only its Secrets", func(t *testing.T) {
		base := registration(t, ctx, "flux")
		patched := base.DeepCopy()
		patched.Spec.Flux.Namespaces = []string{"tenant-a"}
		must(t, c.Patch(ctx, patched, client.MergeFrom(base)))
		testenv.Eventually(t, 20*time.Second, "tenant-b secrets removed", func() error {
			list := &corev1.SecretList{}
			if err := c.List(ctx, list, client.InNamespace("tenant-b")); err != nil {
				return err
			}
			if len(list.Items) != 0 {
				return fmt.Errorf("%d secrets left in tenant-b", len(list.Items))
			}
			return nil
		})
		for key := range workloads {
			if _, err := sameToken(key, "tenant-a"); err != nil {
				t.Fatal(err)
			}
		}
	})

	must(t, c.Delete(ctx, reg))
	testenv.Eventually(t, 20*time.Second, "all removed", func() error {
		for _, ns := range []string{"tenant-a", "tenant-b", "argocd-flux"} {
			list := &corev1.SecretList{}
			if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
				return err
			}
			if len(list.Items) != 0 {
				return fmt.Errorf("%d secrets left in %s", len(list.Items), ns)
			}
		}
		return nil
	})
}
