package fleet

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// A registered cluster is read from its Secret's labels and annotations (owned.Record) alone: a Secret
// whose metadata lacks what the plugin serves stands for no cluster, whatever its data holds.
func TestClusterFromSecretReadsMetadataOnly(t *testing.T) {
	key := types.NamespacedName{Namespace: "fleet", Name: "edge-1"}
	capi := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{"env": "prod"}}}
	meta := func(r owned.Record) metav1.Object {
		m := SecretMetadata()
		m.ObjectMeta = metav1.ObjectMeta{Namespace: "argocd", Name: "s", Labels: r.Labels(), Annotations: r.Annotations()}
		return m
	}
	argo := owned.Record{Registration: "fleet", Cluster: key, Output: owned.OutputArgoCD, Server: "https://10.0.0.1:6443",
		ArgoCDName: "fleet.edge-1", KubernetesVersion: "v1.36.3", Reachable: true}
	flux := owned.Record{Registration: "flux", Cluster: key, Output: owned.OutputFlux, Server: "https://10.0.0.1:6443", ArgoCDName: "ignored"}

	got, ok := ClusterFromSecret(meta(argo), capi)
	want := Cluster{Name: "edge-1", Namespace: "fleet", ArgoCDName: "fleet.edge-1", Server: "https://10.0.0.1:6443",
		Labels: map[string]string{"env": "prod"}, KubernetesVersion: "v1.36.3", Ready: true, Registration: "fleet"}
	if !ok || got.Name != want.Name || got.Namespace != want.Namespace || got.ArgoCDName != want.ArgoCDName || got.Server != want.Server ||
		got.KubernetesVersion != want.KubernetesVersion || got.Ready != want.Ready || got.Registration != want.Registration ||
		len(got.Labels) != 1 || got.Labels["env"] != "prod" {
		t.Fatalf("Argo CD output: got %+v, %v; want %+v", got, ok, want)
	}
	got, ok = ClusterFromSecret(meta(flux), nil)
	if !ok || got.Server != flux.Server || got.ArgoCDName != "" || got.Ready || got.Labels[owned.LabelOutput] != owned.OutputFlux {
		t.Fatalf("Flux output: got %+v, %v", got, ok)
	}

	noServer, noName := argo, argo
	noServer.Server, noName.ArgoCDName = "", ""
	for name, m := range map[string]metav1.Object{"no server": meta(noServer), "Argo CD output without a name": meta(noName)} {
		if c, ok := ClusterFromSecret(m, capi); !ok || !c.Incomplete {
			t.Errorf("%s: stands for %+v, %v; want an incomplete cluster", name, c, ok)
		}
	}
	// What Argo CD reads (data.name, data.server) is not what the plugin reads.
	withData := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "argocd", Name: "s", Labels: noServer.Labels(), Annotations: noServer.Annotations()},
		Data: map[string][]byte{"name": []byte("fleet.edge-1"), "server": []byte("https://10.0.0.1:6443")}}
	if c, _ := ClusterFromSecret(withData, capi); c.Server != "" || !c.Incomplete {
		t.Errorf("a Secret's data was read: %+v", c)
	}
}

// The Store keeps Secrets as metadata: a full Secret handed to it is not kept, and a cluster comes
// from the metadata of its owned Secret.
func TestStoreKeepsSecretMetadataOnly(t *testing.T) {
	key := types.NamespacedName{Namespace: "fleet", Name: "edge-1"}
	rec := owned.Record{Registration: "fleet", Cluster: key, Output: owned.OutputArgoCD, Server: "https://10.0.0.1:6443", ArgoCDName: "edge-1", Reachable: true}
	s := NewStore()
	s.Add(&fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}, Spec: fleetv1.RegistrationSpec{ArgoCD: &fleetv1.ArgoCDTarget{Namespace: "argocd"}}})
	s.Add(&clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, ResourceVersion: "1"}})
	s.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "argocd", Name: "full", Labels: rec.Labels(), Annotations: rec.Annotations(), ResourceVersion: "1"},
		Data: map[string][]byte{"config": []byte(`{"bearerToken":"secret"}`)}})
	if n := len(s.Snapshot().Clusters); n != 0 {
		t.Fatalf("a full Secret was kept: %d clusters", n)
	}
	m := SecretMetadata()
	m.ObjectMeta = metav1.ObjectMeta{Namespace: "argocd", Name: "meta", Labels: rec.Labels(), Annotations: rec.Annotations(), ResourceVersion: "1"}
	s.Add(m)
	if c := s.Snapshot().Clusters; len(c) != 1 || c[0].Server != rec.Server || c[0].ArgoCDName != rec.ArgoCDName {
		t.Fatalf("clusters %+v", c)
	}
}
