package registrar

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// checkArgoDuplicates keeps one Secret per server URL and per Argo CD name in a namespace, first come,
// first served: the Secret that holds a name or server first keeps it, and a newcomer gets a Conflict
// that names only its own objects. When two Secrets were written at once (the caches had not shown
// each other), the one created later yields and is deleted, so the two never evict each other. A Secret
// fleetbridge does not own always wins. The Secrets fleetbridge does not own come from a cache of their
// identity only (newUnownedArgoCache); a live List on each create made a cold start quadratic.
func (r *ClusterReconciler) checkArgoDuplicates(ctx context.Context, cluster types.NamespacedName, desired, existing *corev1.Secret) error {
	for _, idx := range []struct{ field, key string }{
		{indexArgoServer, argocd.KeyServer},
		{indexArgoName, argocd.KeyName},
	} {
		value := string(desired.Data[idx.key])
		others := &corev1.SecretList{}
		if err := r.Client.List(ctx, others, client.InNamespace(desired.Namespace), client.MatchingFields{idx.field: value}); err != nil {
			return err
		}
		for i := range others.Items {
			o := &others.Items[i]
			if !owned.IsOwned(o.Labels) {
				// The owned-Secret cache selects on the registration label's presence, so it may hold a
				// Secret whose label is empty: not fleetbridge's, and such a Secret wins.
				if existing == nil {
					return argoConflict(idx.key, desired)
				}
				continue
			}
			if other, ok := owned.ClusterOf(o.Labels); !ok || other == cluster || o.Name == desired.Name {
				continue
			}
			holds := existing != nil && string(existing.Data[idx.key]) == value
			if holds && !createdBefore(o, existing) {
				continue // this Cluster's Secret is the incumbent
			}
			if holds {
				// Both were written before either cache showed the other: the later one yields.
				if err := r.writer.delete(ctx, existing); err != nil {
					return err
				}
			}
			return argoConflict(idx.key, desired)
		}
	}
	if existing != nil {
		return nil
	}
	live := &corev1.SecretList{}
	if err := r.unownedArgo.List(ctx, live, client.InNamespace(desired.Namespace)); err != nil {
		return err
	}
	for _, o := range live.Items {
		switch {
		case string(o.Data[argocd.KeyServer]) == string(desired.Data[argocd.KeyServer]):
			return argoConflict(argocd.KeyServer, desired)
		case string(o.Data[argocd.KeyName]) == string(desired.Data[argocd.KeyName]):
			return argoConflict(argocd.KeyName, desired)
		}
	}
	return nil
}

// createdBefore orders two Secrets by creation, then by name (creation timestamps have a resolution of
// a second).
func createdBefore(a, b *corev1.Secret) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// argoConflict reports that another cluster Secret holds this Cluster's Argo CD name or server URL. It
// names only the reader's own objects: never the other Secret, its Cluster or its server.
func argoConflict(key string, desired *corev1.Secret) error {
	if key == argocd.KeyName {
		return failure(fleetv1.ReasonConflict,
			"the Argo CD name %q is already registered in namespace %s for another cluster; the first registration keeps it (change spec.argocd.nameTemplate)",
			string(desired.Data[argocd.KeyName]), desired.Namespace)
	}
	return failure(fleetv1.ReasonConflict,
		"this Cluster's server URL is already registered in Argo CD namespace %s for another cluster; the first registration keeps it", desired.Namespace)
}
