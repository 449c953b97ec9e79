package registrar

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// The kubeconfig Secret cache keeps a Cluster's kubeconfig and nothing else: never the keys of the other
// Secrets Cluster API labels with the cluster's name.
func TestKubeconfigOnly(t *testing.T) {
	labels := map[string]string{clusterv1.ClusterNameLabel: "edge", "other": "x"}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "fleet", Name: name, ResourceVersion: "7", Labels: labels,
			Annotations:   map[string]string{"a": "b"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "capi"}}}
	}
	for _, tc := range []struct {
		name     string
		in       *corev1.Secret
		wantData map[string]string
	}{
		{"kubeconfig", &corev1.Secret{ObjectMeta: meta("edge-kubeconfig"),
			Data: map[string][]byte{"value": []byte("kc"), "relative": []byte("r")}}, map[string]string{"value": "kc"}},
		{"cluster CA", &corev1.Secret{ObjectMeta: meta("edge-ca"),
			Data: map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte("k")}}, nil},
		{"another cluster's name", &corev1.Secret{ObjectMeta: meta("other-kubeconfig"),
			Data: map[string][]byte{"value": []byte("kc")}}, nil},
		{"user kubeconfig", &corev1.Secret{ObjectMeta: meta("edge-user-kubeconfig"),
			Data: map[string][]byte{"value": []byte("kc")}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := kubeconfigOnly(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			s := out.(*corev1.Secret)
			if s.Name != tc.in.Name || s.Namespace != "fleet" || s.ResourceVersion != "7" {
				t.Fatalf("identity lost: %s/%s rv %s", s.Namespace, s.Name, s.ResourceVersion)
			}
			if len(s.Labels) != 1 || s.Labels[clusterv1.ClusterNameLabel] != "edge" || s.Annotations != nil || s.ManagedFields != nil {
				t.Fatalf("metadata kept: labels %v annotations %v managedFields %v", s.Labels, s.Annotations, s.ManagedFields)
			}
			if len(s.Data) != len(tc.wantData) {
				t.Fatalf("data keys = %d, want %d", len(s.Data), len(tc.wantData))
			}
			for k, v := range tc.wantData {
				if string(s.Data[k]) != v {
					t.Fatalf("data[%s] = %q", k, s.Data[k])
				}
			}
		})
	}
}
