package owned

import (
	"reflect"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// A Record survives its encoding into labels and annotations, whatever it holds.
func TestRecordRoundTrip(t *testing.T) {
	issued := time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)
	cluster := types.NamespacedName{Namespace: "fleet", Name: "edge-1"}
	for name, r := range map[string]Record{
		"argo cd, token": {Registration: "fleet", Cluster: cluster, Output: OutputArgoCD, Server: "https://10.0.0.1:6443",
			ArgoCDName: "fleet.edge-1", KubernetesVersion: "v1.36.3+k3s1", Reachable: true, TokenIssuedAt: issued, TokenExpiresAt: issued.Add(time.Hour)},
		"flux, unreachable, no version": {Registration: "flux", Cluster: cluster, Output: OutputFlux, Server: "https://edge.example:6443/prefix"},
		"kubeconfig mode, no token": {Registration: "kc", Cluster: cluster, Output: OutputArgoCD, Server: "https://[fd00::1]:6443",
			ArgoCDName: "edge 1 (eu)", KubernetesVersion: "v1.36.3", Reachable: true},
		"no server yet": {Registration: "kc", Cluster: cluster, Output: OutputArgoCD},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := RecordOf(r.Labels(), r.Annotations())
			if !ok || !reflect.DeepEqual(got, r) {
				t.Fatalf("decoded %+v, %v; want %+v", got, ok, r)
			}
		})
	}
	if _, ok := RecordOf(map[string]string{"team": "a"}, nil); ok {
		t.Fatal("a Secret without ownership labels decodes as fleetbridge's")
	}
	// A version that cannot be a label value is left out rather than written wrong.
	r := Record{Registration: "r", Cluster: cluster, Output: OutputFlux, KubernetesVersion: "v1.36.3 (custom build)"}
	if _, has := r.Labels()[LabelKubernetesVersion]; has {
		t.Fatal("an invalid label value was written")
	}
}
