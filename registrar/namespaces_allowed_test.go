package registrar

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// The namespaces the controller is confined to: an empty list allows every namespace, and a namespace
// event outside the Cluster namespaces lists nothing (the cache holds no Cluster there).
func TestNamespacesAllowed(t *testing.T) {
	confined := Namespaces{Secrets: []string{"argocd"}, Clusters: []string{"fleet"}}
	for _, tc := range []struct {
		n                 Namespaces
		ns                string
		secrets, clusters bool
	}{
		{Namespaces{}, "anything", true, true},
		{confined, "argocd", true, false},
		{confined, "fleet", false, true},
		{confined, "other", false, false},
	} {
		if got := tc.n.SecretsAllowed(tc.ns); got != tc.secrets {
			t.Errorf("%+v SecretsAllowed(%s) = %v", tc.n, tc.ns, got)
		}
		if got := tc.n.ClustersAllowed(tc.ns); got != tc.clusters {
			t.Errorf("%+v ClustersAllowed(%s) = %v", tc.n, tc.ns, got)
		}
	}
	r := &ClusterReconciler{Namespaces: confined}
	keys := map[types.NamespacedName]bool{}
	r.clustersIn(context.Background(), "other", keys) // no client: a list would panic
	if len(keys) != 0 {
		t.Fatalf("keys %v", keys)
	}
}
