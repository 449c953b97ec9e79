package registrar

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// namespaceEvents enqueues the Clusters a Namespace event can change, and no others: every reconcile
// probes its workload cluster, so a namespace created for anything else must not re-probe the fleet.
// Two things depend on a namespace: the selection of the Clusters in it (spec.namespaceSelector reads
// its labels), and the Flux target set of a Registration (spec.flux.namespaces and
// spec.flux.namespaceSelector). Old and new namespaces are compared, so an update that keeps its labels
// and its termination as they are (an annotation, a finalizer, an informer resync) enqueues nothing.
func (r *ClusterReconciler) namespaceEvents() handler.EventHandler {
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.enqueueNamespaceChange(ctx, q, nil, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.enqueueNamespaceChange(ctx, q, e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.enqueueNamespaceChange(ctx, q, e.Object, nil)
		},
	}
}

// enqueueNamespaceChange enqueues the Clusters affected by a namespace going from before to after;
// before is nil for a creation and after is nil for a deletion.
func (r *ClusterReconciler) enqueueNamespaceChange(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], before, after client.Object) {
	name := namespaceName(before, after)
	keys := map[types.NamespacedName]bool{}
	if before == nil || after == nil || !labels.Equals(before.GetLabels(), after.GetLabels()) {
		r.clustersIn(ctx, name, keys)
	}
	regs := &fleetv1.RegistrationList{}
	if err := r.Client.List(ctx, regs); err != nil {
		log.FromContext(ctx).Info("cannot list Registrations for a namespace event", "namespace", name, "error", shortError(err))
		return
	}
	var nsLabels map[string]map[string]string
	for i := range regs.Items {
		reg := &regs.Items[i]
		if !fluxTargetChanged(reg, before, after) {
			continue
		}
		if nsLabels == nil {
			var err error
			if nsLabels, err = r.namespaceLabels(ctx); err != nil {
				log.FromContext(ctx).Info("cannot list namespaces for a namespace event", "namespace", name, "error", shortError(err))
				break
			}
		}
		r.clustersOf(ctx, reg, name, nsLabels, keys)
	}
	for key := range keys {
		q.Add(reconcile.Request{NamespacedName: key})
	}
}

func namespaceName(before, after client.Object) string {
	if after != nil {
		return after.GetName()
	}
	return before.GetName()
}

// fluxTargetChanged says whether a namespace going from before to after adds it to, or removes it from,
// the namespaces a Registration writes Flux Secrets in (as fluxNamespaces computes them: listed or
// selected, and not terminating). A suspended or deleted Registration writes no Secret when a namespace
// changes, so its targets never change here.
func fluxTargetChanged(reg *fleetv1.Registration, before, after client.Object) bool {
	if reg.Spec.Flux == nil || reg.Spec.Suspend || !reg.DeletionTimestamp.IsZero() {
		return false
	}
	var sel labels.Selector
	if reg.Spec.Flux.NamespaceSelector != nil {
		var err error
		// An invalid selector fails every Cluster of the Registration whatever the namespaces are.
		if sel, err = metav1.LabelSelectorAsSelector(reg.Spec.Flux.NamespaceSelector); err != nil {
			return false
		}
	}
	isTarget := func(ns client.Object) bool {
		if ns == nil || !ns.GetDeletionTimestamp().IsZero() {
			return false
		}
		return slices.Contains(reg.Spec.Flux.Namespaces, ns.GetName()) || (sel != nil && sel.Matches(labels.Set(ns.GetLabels())))
	}
	return isTarget(before) != isTarget(after)
}

// clustersIn adds the Clusters of one namespace to keys.
func (r *ClusterReconciler) clustersIn(ctx context.Context, namespace string, keys map[types.NamespacedName]bool) {
	if !r.Namespaces.ClustersAllowed(namespace) {
		return // no Cluster there is read: the cache has none, and listing it would fail
	}
	clusters := &clusterv1.ClusterList{}
	if err := r.Client.List(ctx, clusters, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Info("cannot list Clusters for a namespace event", "namespace", namespace, "error", shortError(err))
		return
	}
	for _, c := range clusters.Items {
		keys[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] = true
	}
}

// clustersOf adds to keys the Clusters whose Flux Secrets in namespace change when it joins or leaves a
// Registration's targets: those the Registration selects (they gain one), and those it wrote a Secret
// for there (they lose it; such a Cluster may no longer be selected, or exist). Secrets elsewhere do not
// change, so only the namespace's own are listed, not every Secret of the Registration.
func (r *ClusterReconciler) clustersOf(ctx context.Context, reg *fleetv1.Registration, namespace string, nsLabels map[string]map[string]string, keys map[types.NamespacedName]bool) {
	secrets := &corev1.SecretList{}
	if err := r.Client.List(ctx, secrets, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: owned.ForRegistration(reg.Name)}, client.UnsafeDisableDeepCopy); err == nil {
		for _, s := range secrets.Items {
			if key, ok := owned.ClusterOf(s.Labels); ok {
				keys[key] = true
			}
		}
	}
	sel, err := selectorsOf(reg)
	if err != nil {
		return
	}
	clusters := &clusterv1.ClusterList{}
	if err := r.Client.List(ctx, clusters, client.MatchingLabelsSelector{Selector: sel.clusters}, client.UnsafeDisableDeepCopy); err != nil {
		return
	}
	for _, c := range clusters.Items {
		if sel.namespaces.Matches(labels.Set(nsLabels[c.Namespace])) {
			keys[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] = true
		}
	}
}

// namespaceLabels are the labels of every cached namespace, by name.
func (r *ClusterReconciler) namespaceLabels(ctx context.Context) (map[string]map[string]string, error) {
	list := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make(map[string]map[string]string, len(list.Items))
	for _, ns := range list.Items {
		out[ns.Name] = ns.Labels
	}
	return out, nil
}
