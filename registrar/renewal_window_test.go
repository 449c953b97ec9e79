package registrar

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// Tokens renew at their window, not each at its own time: a lead before the window the registrar mints
// the next tokens and writes nothing; at the window it writes them, with no workload call, one write per
// Secret, counted as rotation. The clock moves; the renewal scheduler alone starts both reconciles.
func TestRenewalWindowMintsAheadThenWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	must(t, mgmt.EnsureNamespace(ctx, argoNS, nil))
	var keys []types.NamespacedName
	for _, name := range []string{"window-1", "window-2"} {
		_, err := mgmt.AddWorkload(ctx, "windows", name, testenv.ClusterOptions{Labels: map[string]string{"renewal": "window"}})
		must(t, err)
		keys = append(keys, types.NamespacedName{Namespace: "windows", Name: name})
	}
	rm := startManager(t)
	defer rm.stop(t)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "windows"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"renewal": "window"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: argoNS},
			Credentials:     fleetv1.Credentials{TokenTTL: &metav1.Duration{Duration: time.Hour}},
		},
	}
	must(t, mgmt.Client.Create(ctx, reg))
	defer deleteRegistration(t, ctx, reg)
	expectArgoSecrets(t, ctx, keys...)
	for _, k := range keys {
		settle(t, ctx, rm, k)
	}

	// The Clusters of the earliest window.
	window, leadAt := time.Time{}, time.Time{}
	tokens := map[types.NamespacedName]string{}
	windowOf := map[types.NamespacedName]time.Time{}
	for _, k := range keys {
		s := argoSecret(t, ctx, k)
		rec, ok := owned.RecordOf(s.Labels, s.Annotations)
		if !ok {
			t.Fatalf("%s: no token times", k)
		}
		cluster := &clusterv1.Cluster{}
		must(t, mgmt.Client.Get(ctx, k, cluster))
		times := tokenTimes{IssuedAt: rec.TokenIssuedAt, ExpiresAt: rec.TokenExpiresAt}
		windowOf[k] = renewalWindow(times, renewalSeed(cluster.UID, reg.Name))
		if window.IsZero() || windowOf[k].Before(window) {
			window = windowOf[k]
		}
		tokens[k] = bearerToken(t, s)
	}
	var due []types.NamespacedName
	for _, k := range keys {
		if windowOf[k].Equal(window) {
			due = append(due, k)
		}
	}
	leadAt = window.Add(-premintLead(time.Hour))
	minted := testutil.ToFloat64(tokensMinted.WithLabelValues(reg.Name))
	rotations := testutil.ToFloat64(secretWrites.WithLabelValues(owned.OutputArgoCD, "update", causeRotation))

	t.Run("a lead before the window, the next tokens are minted and nothing is written", func(t *testing.T) {
		rm.mgmtWrites.reset()
		rm.clock.Advance(leadAt.Sub(rm.clock.Now()) + time.Second)
		testenv.Eventually(t, 20*time.Second, "tokens minted ahead", func() error {
			if got := testutil.ToFloat64(tokensMinted.WithLabelValues(reg.Name)) - minted; got < float64(len(due)) {
				return fmt.Errorf("%v of %d minted", got, len(due))
			}
			return nil
		})
		time.Sleep(2 * time.Second)
		for _, k := range due {
			if bearerToken(t, argoSecret(t, ctx, k)) != tokens[k] {
				t.Errorf("%s: the token changed before its window", k)
			}
		}
		if strings.Contains(rm.mgmtWrites.String(), "/secrets") {
			t.Fatalf("minting ahead wrote Secrets: %s", rm.mgmtWrites)
		}
	})

	t.Run("at the window, each Secret is written once with the token minted ahead", func(t *testing.T) {
		rm.mgmtWrites.reset()
		rm.workloadWrites.reset()
		mintedBefore := testutil.ToFloat64(tokensMinted.WithLabelValues(reg.Name))
		rm.clock.Advance(window.Sub(rm.clock.Now()) + time.Second)
		testenv.Eventually(t, 20*time.Second, "the window's writes", func() error {
			for _, k := range due {
				if bearerToken(t, argoSecret(t, ctx, k)) == tokens[k] {
					return fmt.Errorf("%s still has its old token", k)
				}
			}
			return nil
		})
		for _, k := range due {
			settle(t, ctx, rm, k)
			s := argoSecret(t, ctx, k)
			rec, _ := owned.RecordOf(s.Labels, s.Annotations)
			if rec.TokenIssuedAt.After(window) || window.Sub(rec.TokenIssuedAt) > premintLead(time.Hour) {
				t.Errorf("%s: the written token was issued %s before its window, want within the lead", k, window.Sub(rec.TokenIssuedAt))
			}
			expectTokenWorks(t, ctx, s, true)
		}
		time.Sleep(2 * time.Second)
		if n := strings.Count(rm.mgmtWrites.String(), "/secrets/"); n != len(due) {
			t.Fatalf("%d Secret writes at the window, want %d: %s", n, len(due), rm.mgmtWrites)
		}
		if w := rm.workloadWrites.String(); w != "" {
			t.Fatalf("the window called the workload clusters: %s", w)
		}
		if got := testutil.ToFloat64(tokensMinted.WithLabelValues(reg.Name)); got != mintedBefore {
			t.Fatalf("%v tokens minted at the window, want none", got-mintedBefore)
		}
		if got := testutil.ToFloat64(secretWrites.WithLabelValues(owned.OutputArgoCD, "update", causeRotation)) - rotations; got != float64(len(due)) {
			t.Fatalf("%v writes counted as rotation, want %d", got, len(due))
		}
	})
}
