package registrar

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/flux"
	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// forge keeps a JWT's header and payload (so every unsigned claim still matches) and replaces its
// signature, as a tenant who can edit its own kubeconfig Secret can.
func forge(token string) string {
	parts := strings.Split(token, ".")
	parts[2] = base64.RawURLEncoding.EncodeToString([]byte("made-up signature, not the API server's"))
	return strings.Join(parts, ".")
}

// countWrites counts the mutating requests a writeCounter saw whose "METHOD path" matches.
func countWrites(w *writeCounter, matches func(string) bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, p := range w.paths {
		if matches(p) {
			n++
		}
	}
	return n
}

// secretWriteCount counts the writes to Secrets.
func secretWriteCount(w *writeCounter) int {
	return countWrites(w, func(p string) bool { return strings.Contains(p, "/secrets") })
}

// tokenMints counts the TokenRequests.
func tokenMints(w *writeCounter) int {
	return countWrites(w, func(p string) bool { return strings.HasSuffix(p, "/token") })
}

// Outputs are projections of state only fleetbridge controls: a tenant's forged token never spreads,
// and every kind of drift (a forged token, a deleted Secret, an edited CA, stripped labels) is repaired
// within 10 s, with one Secret write, without a new token, and reported as an Event on the Cluster. After
// a restart a token read back from an output is used only once the workload API server confirms it.
func TestOutputsAreRepairedProjections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := mgmt.Client
	const argoNamespace, tenant = "argocd-trust", "tenant-trust"
	for _, ns := range []string{argoNamespace, tenant} {
		must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	}
	key := types.NamespacedName{Namespace: "fleet-trust", Name: "edge-eu"}
	_, err := mgmt.AddWorkload(ctx, key.Namespace, key.Name, testenv.ClusterOptions{Labels: map[string]string{"trust": "test"}})
	must(t, err)
	rm := startManager(t)
	defer func() {
		if rm != nil {
			rm.stop(t)
		}
	}()
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "trust"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"trust": "test"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: argoNamespace},
			Flux:            &fleetv1.FluxTarget{Namespaces: []string{tenant}, SecretNameTemplate: "{{ .Namespace }}.{{ .Name }}.kubeconfig"},
			Credentials: fleetv1.Credentials{TokenTTL: &metav1.Duration{Duration: time.Hour},
				ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-trust"}},
		},
	}
	must(t, c.Create(ctx, reg))
	defer deleteRegistrationAndWait(t, ctx, reg.Name) // before the manager stops: a stop during a deletion is another test

	argoKey := types.NamespacedName{Namespace: argoNamespace, Name: argoSecretName(key)}
	fluxKey := types.NamespacedName{Namespace: tenant, Name: "fleet-trust.edge-eu.kubeconfig"}
	get := func(k types.NamespacedName) (*corev1.Secret, error) {
		s := &corev1.Secret{}
		return s, c.Get(ctx, k, s)
	}
	tokens := func() (argoToken, fluxToken string, err error) {
		a, err := get(argoKey)
		if err != nil {
			return "", "", err
		}
		f, err := get(fluxKey)
		if err != nil {
			return "", "", err
		}
		cfg, err := argocd.ParseConfig(a.Data[argocd.KeyConfig])
		if err != nil {
			return "", "", err
		}
		return cfg.BearerToken, flux.Token(f.Data[flux.KubeconfigKey]), nil
	}
	var good string
	testenv.Eventually(t, 20*time.Second, "both outputs carry one token", func() error {
		a, f, err := tokens()
		if err != nil {
			return err
		}
		if a == "" || a != f {
			return fmt.Errorf("argo and flux tokens differ")
		}
		good = a
		return nil
	})
	time.Sleep(time.Second) // the watch events of the first writes settle

	// expectRepaired waits until both outputs carry the good token again and checks the cost.
	expectRepaired := func(t *testing.T, what string, check func() error) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, what+" repaired", func() error {
			a, f, err := tokens()
			if err != nil {
				return err
			}
			if a != good || f != good {
				return fmt.Errorf("an output does not carry the token fleetbridge minted")
			}
			if check != nil {
				return check()
			}
			return nil
		})
		time.Sleep(2 * time.Second) // nothing else follows
		if n := secretWriteCount(rm.mgmtWrites); n != 1 {
			t.Errorf("repairing %s took %d Secret writes (%s), want 1", what, n, rm.mgmtWrites)
		}
		if n := tokenMints(rm.workloadWrites); n != 0 {
			t.Errorf("repairing %s minted %d tokens, want 0", what, n)
		}
	}

	t.Run("a forged token in a tenant's Secret never reaches Argo CD", func(t *testing.T) {
		rm.mgmtWrites.reset()
		rm.workloadWrites.reset()
		s, err := get(fluxKey)
		must(t, err)
		forged, err := flux.Kubeconfig(mustCreds(t, s.Data[flux.KubeconfigKey]), forge(good))
		must(t, err)
		s.Data[flux.KubeconfigKey] = forged
		must(t, c.Update(ctx, s))
		expectRepaired(t, "a forged Flux token", nil)
		expectEvent(t, ctx, key.Name, fleetv1.ReasonRepaired)
	})

	t.Run("a deleted Argo CD Secret comes back", func(t *testing.T) {
		s, err := get(argoKey)
		must(t, err)
		rm.mgmtWrites.reset()
		rm.workloadWrites.reset()
		must(t, c.Delete(ctx, s))
		expectRepaired(t, "a deleted Argo CD Secret", nil)
	})

	t.Run("an edited CA comes back", func(t *testing.T) {
		s, err := get(argoKey)
		must(t, err)
		cfg, err := argocd.ParseConfig(s.Data[argocd.KeyConfig])
		must(t, err)
		want := string(cfg.TLSClientConfig.CAData)
		cfg.TLSClientConfig.CAData = []byte("-----BEGIN CERTIFICATE-----\nnot the cluster's\n-----END CERTIFICATE-----\n")
		s.Data[argocd.KeyConfig], err = json.Marshal(cfg)
		must(t, err)
		rm.mgmtWrites.reset()
		rm.workloadWrites.reset()
		must(t, c.Update(ctx, s))
		expectRepaired(t, "an edited CA", func() error {
			s, err := get(argoKey)
			if err != nil {
				return err
			}
			cfg, err := argocd.ParseConfig(s.Data[argocd.KeyConfig])
			if err != nil {
				return err
			}
			if string(cfg.TLSClientConfig.CAData) != want {
				return fmt.Errorf("the CA is still the edited one")
			}
			return nil
		})
	})

	t.Run("stripped labels come back", func(t *testing.T) {
		s, err := get(argoKey)
		must(t, err)
		s.Labels = map[string]string{}
		rm.mgmtWrites.reset()
		rm.workloadWrites.reset()
		must(t, c.Update(ctx, s))
		expectRepaired(t, "stripped labels", func() error {
			s, err := get(argoKey)
			if err != nil {
				return err
			}
			if s.Labels[owned.LabelRegistration] != reg.Name || s.Labels[argocd.SecretTypeLabel] != argocd.SecretTypeCluster {
				return fmt.Errorf("labels = %v", s.Labels)
			}
			return nil
		})
	})

	t.Run("after a restart a forged token is refused and a confirmed one kept", func(t *testing.T) {
		rm.stop(t)
		rm = nil
		// While the controller is down, the tenant forges its copy. The Argo CD Secret keeps the real one.
		s, err := get(fluxKey)
		must(t, err)
		forged, err := flux.Kubeconfig(mustCreds(t, s.Data[flux.KubeconfigKey]), forge(good))
		must(t, err)
		s.Data[flux.KubeconfigKey] = forged
		// A later issued-at makes the forged copy look newer than the Argo CD Secret's.
		s.Annotations[owned.AnnotationTokenIssuedAt] = time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
		must(t, c.Update(ctx, s))
		rm = startManager(t)
		expectRepaired(t, "a forged token across a restart", nil)

		// Both copies forged: nothing can be confirmed, so a new token is minted and works.
		rm.stop(t)
		rm = nil
		for _, k := range []types.NamespacedName{argoKey, fluxKey} {
			s, err := get(k)
			must(t, err)
			if k == argoKey {
				cfg, err := argocd.ParseConfig(s.Data[argocd.KeyConfig])
				must(t, err)
				cfg.BearerToken = forge(good)
				s.Data[argocd.KeyConfig], err = json.Marshal(cfg)
				must(t, err)
			} else {
				forged, err := flux.Kubeconfig(mustCreds(t, s.Data[flux.KubeconfigKey]), forge(good))
				must(t, err)
				s.Data[flux.KubeconfigKey] = forged
			}
			must(t, c.Update(ctx, s))
		}
		rm = startManager(t)
		testenv.Eventually(t, 20*time.Second, "a new, working token", func() error {
			a, f, err := tokens()
			if err != nil {
				return err
			}
			if a == forge(good) || a != f {
				return fmt.Errorf("the outputs carry a forged or mismatched token")
			}
			s, err := get(argoKey)
			if err != nil {
				return err
			}
			return tokenWorks(ctx, s)
		})
	})
}

func mustCreds(t *testing.T, kubeconfigData []byte) *kubeconfig.Credentials {
	t.Helper()
	creds, err := kubeconfig.Parse(kubeconfigData)
	must(t, err)
	return creds
}

// tokenWorks says whether an Argo CD cluster Secret's credentials list namespaces.
func tokenWorks(ctx context.Context, s *corev1.Secret) error {
	cfg, err := restConfigFromArgoSecret(s)
	if err != nil {
		return err
	}
	cl, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	return cl.List(ctx, &corev1.NamespaceList{})
}
