package registrar

import (
	"context"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	labelselection "k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// Field indexes over owned Argo CD cluster Secrets, "<namespace>/<value>".
const (
	indexArgoServer = "fleetbridge.argocd.server"
	indexArgoName   = "fleetbridge.argocd.name"
)

// Options tune the registrar.
type Options struct {
	// Resync is how often a registered cluster is probed again when nothing else happens.
	Resync time.Duration
	// ProbeTimeout bounds each call to a workload API server.
	ProbeTimeout time.Duration
	// WorkloadQPS and WorkloadBurst rate-limit calls to each workload API server.
	WorkloadQPS   float32
	WorkloadBurst int
	// Workers is the number of Clusters reconciled in parallel.
	Workers int
	// Now is the clock (tests move it to exercise token renewal); nil means time.Now.
	Now func() time.Time
	// WrapWorkloadTransport, when set, wraps the transport of every workload client (tests count calls).
	WrapWorkloadTransport func(http.RoundTripper) http.RoundTripper
	// Namespaces confines what the controller watches and writes; the zero value means everywhere.
	Namespaces Namespaces
}

// Namespaces confine the controller to the namespaces its RBAC covers, so it can run without
// cluster-wide Secret access. An empty list means every namespace.
type Namespaces struct {
	// Secrets are the namespaces fleetbridge writes Secrets in: Argo CD's and every Flux target namespace.
	Secrets []string
	// Clusters are the namespaces whose CAPI Clusters, and their kubeconfig Secrets, are read.
	Clusters []string
}

// SecretsAllowed reports whether fleetbridge may write Secrets in namespace.
func (n Namespaces) SecretsAllowed(namespace string) bool {
	return len(n.Secrets) == 0 || slices.Contains(n.Secrets, namespace)
}

func namespaceSet(names []string) map[string]cache.Config {
	if len(names) == 0 {
		return nil
	}
	set := make(map[string]cache.Config, len(names))
	for _, n := range names {
		set[n] = cache.Config{}
	}
	return set
}

// Registrar is the set-up registrar: its two reconcilers, exposed so tests can drive them directly.
type Registrar struct {
	Clusters      *ClusterReconciler
	Registrations *RegistrationReconciler
}

// DefaultOptions are the defaults the binary's flags start from.
func DefaultOptions() Options {
	return Options{Resync: 10 * time.Minute, ProbeTimeout: 10 * time.Second, WorkloadQPS: 20, WorkloadBurst: 40, Workers: 8}
}

// CacheByObject restricts the manager's Secret informer to Secrets fleetbridge owns, in the namespaces
// it may write: the registrar never caches other Secrets (CAPI kubeconfig Secrets are watched as metadata
// by a cache of their own). Clusters are watched only where their kubeconfig Secrets may be read.
func CacheByObject(ns Namespaces) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.Secret{}:     {Label: owned.Selector(), Namespaces: namespaceSet(ns.Secrets)},
		&clusterv1.Cluster{}: {Namespaces: namespaceSet(ns.Clusters)},
	}
}

// Setup adds the Cluster and Registration controllers to a manager whose cache uses CacheByObject.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) (*Registrar, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	capiSecrets, err := newKubeconfigSecretCache(mgr, opts.Namespaces.Clusters)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(capiSecrets); err != nil {
		return nil, err
	}
	indexer := mgr.GetFieldIndexer()
	for field, key := range map[string]string{indexArgoServer: argocd.KeyServer, indexArgoName: argocd.KeyName} {
		if err := indexer.IndexField(ctx, &corev1.Secret{}, field, argoDataIndex(key)); err != nil {
			return nil, err
		}
	}

	conns := &connections{reader: mgr.GetAPIReader(), meta: capiSecrets, timeout: opts.ProbeTimeout,
		qps: opts.WorkloadQPS, burst: opts.WorkloadBurst, wrap: opts.WrapWorkloadTransport, m: map[types.NamespacedName]*connection{}}
	res := newResults()
	wakeups := make(chan event.GenericEvent, 1024)
	recorder := mgr.GetEventRecorder("fleetbridge-registrar")

	clusters := &ClusterReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder, Now: opts.Now, Resync: opts.Resync,
		Namespaces: opts.Namespaces, conns: conns, results: res, registrationEvents: wakeups,
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("cluster").
		For(&clusterv1.Cluster{}).
		WatchesRawSource(source.Kind(capiSecrets, newPartialSecret(),
			handler.TypedEnqueueRequestsFromMapFunc(kubeconfigSecretToCluster))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(ownedSecretToCluster)).
		Watches(&fleetv1.Registration{}, handler.EnqueueRequestsFromMapFunc(clusters.registrationToClusters)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(clusters.namespaceToClusters)).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.Workers}).
		Complete(clusters)
	if err != nil {
		return nil, err
	}

	registrations := &RegistrationReconciler{Client: mgr.GetClient(), Recorder: recorder, conns: conns, results: res}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("registration").
		For(&fleetv1.Registration{}).
		WatchesRawSource(source.Channel(wakeups, &handler.EnqueueRequestForObject{})).
		Complete(registrations)
	if err != nil {
		return nil, err
	}
	return &Registrar{Clusters: clusters, Registrations: registrations}, nil
}

// newKubeconfigSecretCache watches, as metadata only, the Secrets Cluster API labels with a cluster name.
// Their data (the admin credentials) is read on demand and never kept in an informer.
func newKubeconfigSecretCache(mgr ctrl.Manager, namespaces []string) (cache.Cache, error) {
	hasClusterName, err := labels.NewRequirement(clusterv1.ClusterNameLabel, labelselection.Exists, nil)
	if err != nil {
		return nil, err
	}
	return cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:           mgr.GetHTTPClient(),
		Scheme:               mgr.GetScheme(),
		Mapper:               mgr.GetRESTMapper(),
		DefaultLabelSelector: labels.NewSelector().Add(*hasClusterName),
		DefaultNamespaces:    namespaceSet(namespaces),
	})
}

func argoDataIndex(key string) client.IndexerFunc {
	return func(obj client.Object) []string {
		s := obj.(*corev1.Secret)
		if s.Labels[owned.LabelOutput] != owned.OutputArgoCD || len(s.Data[key]) == 0 {
			return nil
		}
		return []string{string(s.Data[key])}
	}
}

func kubeconfigSecretToCluster(_ context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
	name := s.Labels[clusterv1.ClusterNameLabel]
	if name == "" || s.Name != kubeconfigSecretName(name) {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: name}}}
}

func ownedSecretToCluster(_ context.Context, obj client.Object) []reconcile.Request {
	if key, ok := owned.ClusterOf(obj.GetLabels()); ok {
		return []reconcile.Request{{NamespacedName: key}}
	}
	return nil
}

// registrationToClusters enqueues every Cluster, plus every Cluster the Registration wrote for (which
// may no longer exist), since a spec change can select or unselect any of them.
func (r *ClusterReconciler) registrationToClusters(ctx context.Context, obj client.Object) []reconcile.Request {
	seen := map[types.NamespacedName]bool{}
	clusters := &clusterv1.ClusterList{}
	if err := r.Client.List(ctx, clusters); err == nil {
		for _, c := range clusters.Items {
			seen[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] = true
		}
	}
	secrets := &corev1.SecretList{}
	if err := r.Client.List(ctx, secrets, client.MatchingLabelsSelector{Selector: owned.ForRegistration(obj.GetName())}); err == nil {
		for _, s := range secrets.Items {
			if key, ok := owned.ClusterOf(s.Labels); ok {
				seen[key] = true
			}
		}
	}
	out := make([]reconcile.Request, 0, len(seen))
	for key := range seen {
		out = append(out, reconcile.Request{NamespacedName: key})
	}
	return out
}

// namespaceToClusters enqueues the Clusters of a namespace (its labels feed namespaceSelector), or every
// Cluster when a Registration writes Flux Secrets (the namespace may be, or stop being, a Flux target).
func (r *ClusterReconciler) namespaceToClusters(ctx context.Context, obj client.Object) []reconcile.Request {
	var opts []client.ListOption
	regs := &fleetv1.RegistrationList{}
	if err := r.Client.List(ctx, regs); err != nil {
		return nil
	}
	anyFlux := false
	for _, reg := range regs.Items {
		anyFlux = anyFlux || reg.Spec.Flux != nil
	}
	if !anyFlux {
		opts = append(opts, client.InNamespace(obj.GetName()))
	}
	clusters := &clusterv1.ClusterList{}
	if err := r.Client.List(ctx, clusters, opts...); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(clusters.Items))
	for _, c := range clusters.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: c.Namespace, Name: c.Name}})
	}
	return out
}
