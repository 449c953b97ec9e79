package registrar

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// The kubeconfig Secret cache keeps a Secret's name and resourceVersion, and the cluster-name label of
// a kubeconfig only: the CA and bootstrap Secrets Cluster API labels alike are most of what it holds.
func TestKubeconfigIdentityOnly(t *testing.T) {
	meta := func(name string) *metav1.PartialObjectMetadata {
		m := newPartialSecret()
		m.ObjectMeta = metav1.ObjectMeta{Namespace: "fleet", Name: name, ResourceVersion: "7", UID: types.UID("u"),
			Labels:            map[string]string{clusterv1.ClusterNameLabel: "edge", "other": "x"},
			Annotations:       map[string]string{"a": "b"},
			OwnerReferences:   []metav1.OwnerReference{{Kind: "KubeadmControlPlane", Name: "edge"}},
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "capi"}},
			CreationTimestamp: metav1.NewTime(time.Unix(1, 0))}
		return m
	}
	for _, tc := range []struct {
		name      string
		keepLabel bool
	}{
		{"edge-kubeconfig", true},
		{"edge-ca", false},
		{"edge-user-kubeconfig", false},
		{"other-kubeconfig", false},
	} {
		out, err := kubeconfigIdentityOnly(meta(tc.name))
		if err != nil {
			t.Fatal(err)
		}
		m := out.(*metav1.PartialObjectMetadata)
		want := metav1.ObjectMeta{Namespace: "fleet", Name: tc.name, ResourceVersion: "7"}
		if tc.keepLabel {
			want.Labels = map[string]string{clusterv1.ClusterNameLabel: "edge"}
		}
		if m.Kind != "Secret" || m.Name != want.Name || m.Namespace != want.Namespace || m.ResourceVersion != want.ResourceVersion ||
			len(m.Labels) != len(want.Labels) || m.Labels[clusterv1.ClusterNameLabel] != want.Labels[clusterv1.ClusterNameLabel] ||
			m.UID != "" || m.Annotations != nil || m.OwnerReferences != nil || m.ManagedFields != nil || !m.CreationTimestamp.IsZero() {
			t.Errorf("%s: kept %+v", tc.name, m.ObjectMeta)
		}
	}
}
