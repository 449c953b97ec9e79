package registrar

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// A Secret fleetbridge would create but someone else already made is reported as a Conflict and left
// exactly as it is: the create carries a precondition, so no read before it can race a hand-made Secret.
// Once it is gone, the cluster is registered.
func TestHandMadeSecretIsNeverTakenOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "argocd-handmade"
	must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	key := types.NamespacedName{Namespace: "fleet-hm", Name: "hm-1"}
	secretKey := types.NamespacedName{Namespace: ns, Name: argoSecretName(key)}
	handMade := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretKey.Name, Labels: map[string]string{"team": "platform"}},
		Data:       map[string][]byte{"server": []byte("https://hand.example.com"), "keep": []byte("me")},
	}
	must(t, mgmt.Client.Create(ctx, handMade))
	_, err := mgmt.AddWorkload(ctx, key.Namespace, key.Name, testenv.ClusterOptions{Labels: map[string]string{"handmade": "true"}})
	must(t, err)

	rm := startManager(t)
	defer rm.stop(t)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "handmade"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"handmade": "true"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: ns},
			Credentials:     fleetv1.Credentials{Mode: fleetv1.CredentialsKubeconfig},
		},
	}
	must(t, mgmt.Client.Create(ctx, reg))
	defer func() { _ = mgmt.Client.Delete(context.Background(), reg) }()

	testenv.Eventually(t, 20*time.Second, "conflict reported", func() error {
		got := registration(t, ctx, reg.Name)
		for _, f := range got.Status.Failures {
			if f.Name == key.Name && f.Reason == fleetv1.ReasonConflict && strings.Contains(f.Message, "not managed by fleetbridge") {
				return nil
			}
		}
		return fmt.Errorf("failures = %+v", got.Status.Failures)
	})
	expectEvent(t, ctx, key.Name, fleetv1.ReasonConflict)
	live := &corev1.Secret{}
	must(t, mgmt.Client.Get(ctx, secretKey, live))
	if live.ResourceVersion != handMade.ResourceVersion || len(live.Labels) != 1 || len(live.Data) != 2 || string(live.Data["server"]) != "https://hand.example.com" {
		t.Fatalf("the hand-made Secret was written: rv %s -> %s, labels %v, data keys %d", handMade.ResourceVersion, live.ResourceVersion, live.Labels, len(live.Data))
	}
	for _, m := range live.ManagedFields {
		if m.Manager == owned.FieldManager {
			t.Fatalf("fleetbridge manages fields of the hand-made Secret: %+v", m)
		}
	}

	must(t, mgmt.Client.Delete(ctx, live))
	// The Cluster waits out its backoff (5 s and doubling); reconcile it now rather than wait.
	reconcileCluster(t, ctx, rm, key)
	testenv.Eventually(t, 10*time.Second, "registered once the hand-made Secret is gone", func() error {
		s := &corev1.Secret{}
		if err := mgmt.Client.Get(ctx, secretKey, s); err != nil {
			return err
		}
		if !owned.IsOwned(s.Labels) || s.Labels[owned.LabelRegistration] != reg.Name {
			return fmt.Errorf("labels = %v", s.Labels)
		}
		return nil
	})

	// The cache may not show a Secret fleetbridge just created: the create's Conflict then reads the
	// Secret's metadata, finds it is fleetbridge's, and writes it as an update instead of failing.
	desired := &corev1.Secret{}
	must(t, mgmt.Client.Get(ctx, secretKey, desired))
	desired = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretKey.Name, Labels: desired.Labels, Annotations: map[string]string{"fleetbridge.io/test": "lagging cache"}},
		Type:       desired.Type,
		Data:       desired.Data,
	}
	cur := registration(t, ctx, reg.Name)
	if _, err := rm.reg.Clusters.writer.write(ctx, owner{cur.Name, key}, nil, desired, false); err != nil {
		t.Fatalf("writing an owned Secret the cache did not show: %v", err)
	}
	must(t, mgmt.Client.Get(ctx, secretKey, live))
	if live.Annotations["fleetbridge.io/test"] != "lagging cache" {
		t.Fatalf("annotations = %v", live.Annotations)
	}
	// Someone else's Secret is refused on that path too.
	other := desired.DeepCopy()
	other.Name = "not-fleetbridges"
	must(t, mgmt.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: other.Name}}))
	_, err = rm.reg.Clusters.writer.write(ctx, owner{cur.Name, key}, nil, other, false)
	if reasonOf(err, "") != fleetv1.ReasonConflict {
		t.Fatalf("writing over someone else's Secret: %v", err)
	}
	must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: other.Name}, live))
	if len(live.Labels) != 0 || len(live.Data) != 0 {
		t.Fatalf("someone else's Secret was written: labels %v, data keys %d", live.Labels, len(live.Data))
	}
	if err := mgmt.Client.Delete(ctx, live); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}
