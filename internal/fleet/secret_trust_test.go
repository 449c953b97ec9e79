package fleet

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

func secretMeta(namespace, name string, rec owned.Record) *metav1.PartialObjectMetadata {
	m := SecretMetadata()
	m.ObjectMeta = metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: rec.Labels(), Annotations: rec.Annotations(), ResourceVersion: "1"}
	return m
}

// A Secret speaks for a Registration only in a namespace that Registration writes to: a tenant who
// forges a Secret in its own namespace cannot put a cluster, a server or an outage into another
// tenant's Registration. Among a Registration's Flux copies the choice is by namespace, never by map
// order.
func TestOnlyTheRegistrationsNamespacesSpeakForIt(t *testing.T) {
	s := NewStore()
	s.Add(&fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "reg-a"}, Spec: fleetv1.RegistrationSpec{
		Flux: &fleetv1.FluxTarget{Namespaces: []string{"team-a", "team-a2"}}}})
	s.Add(&fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "reg-b"}, Spec: fleetv1.RegistrationSpec{
		Flux: &fleetv1.FluxTarget{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "b"}}}}})
	s.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b", Labels: map[string]string{"tenant": "b"}}})
	a1 := types.NamespacedName{Namespace: "fleet-a", Name: "a1"}
	b1 := types.NamespacedName{Namespace: "fleet-b", Name: "b1"}
	for _, key := range []types.NamespacedName{a1, b1} {
		s.Add(&clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, ResourceVersion: "1"}})
	}
	flux := func(reg string, key types.NamespacedName, server string) owned.Record {
		return owned.Record{Registration: reg, Cluster: key, Output: owned.OutputFlux, Server: server, Reachable: true}
	}
	s.Add(secretMeta("team-a2", "a1.kubeconfig", flux("reg-a", a1, "https://a1-from-team-a2")))
	s.Add(secretMeta("team-a", "a1.kubeconfig", flux("reg-a", a1, "https://a1")))
	s.Add(secretMeta("team-b", "b1.kubeconfig", flux("reg-b", b1, "https://b1")))
	// Tenant b forges Secrets in its namespace: b1 into reg-a, and a1 unreachable with its own server.
	s.Add(secretMeta("team-b", "forged-1", flux("reg-a", b1, "https://evil")))
	forged := flux("reg-a", a1, "https://evil")
	forged.Reachable = false
	s.Add(secretMeta("team-b", "forged-2", forged))

	got := map[string]string{}
	for _, c := range s.Snapshot().Clusters {
		got[c.Registration+"/"+c.Name] = c.Server
		if !c.Ready {
			t.Errorf("%s/%s is unready", c.Registration, c.Name)
		}
	}
	want := map[string]string{"reg-a/a1": "https://a1", "reg-b/b1": "https://b1"}
	if len(got) != len(want) || got["reg-a/a1"] != want["reg-a/a1"] || got["reg-b/b1"] != want["reg-b/b1"] {
		t.Fatalf("clusters %v, want %v", got, want)
	}
	// A namespace that stops matching the selector stops speaking for the Registration.
	s.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b", Labels: map[string]string{"tenant": "x"}}})
	for _, c := range s.Snapshot().Clusters {
		if c.Registration == "reg-b" {
			t.Fatalf("a Secret in a namespace reg-b no longer selects still counts: %+v", c)
		}
	}
}

// A registered cluster whose Secret lacks the published facts (written by an older registrar) is not
// left out of answers, which would delete its Applications: an answer that holds it is refused.
func TestIncompleteClusterRefusesTheAnswer(t *testing.T) {
	s := NewStore()
	s.Add(&fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}, Spec: fleetv1.RegistrationSpec{ArgoCD: &fleetv1.ArgoCDTarget{}}})
	key := types.NamespacedName{Namespace: "fleet", Name: "old"}
	s.Add(&clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, ResourceVersion: "1",
		Labels: map[string]string{"env": "prod"}}})
	s.Add(secretMeta("argocd", "old", owned.Record{Registration: "fleet", Cluster: key, Output: owned.OutputArgoCD, Reachable: true}))
	s.Add(&fleetv1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web", ResourceVersion: "1"},
		Spec: fleetv1.WorkloadSpec{ClusterSelector: &metav1.LabelSelector{}}})
	snap := s.Snapshot()
	if _, err := snap.Answer(Filter{}, ArgoCD); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v", err)
	}
}
