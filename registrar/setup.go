package registrar

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	labelselection "k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/clusterinventory"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// Field indexes over owned Argo CD cluster Secrets, "<namespace>/<value>".
const (
	indexArgoServer = "fleetbridge.argocd.server"
	indexArgoName   = "fleetbridge.argocd.name"
)

// indexCluster indexes owned Secrets by the Cluster they were written for ("<namespace>/<name>"), so a
// reconcile finds a Cluster's Secrets without matching the labels of every owned Secret.
const indexCluster = "fleetbridge.cluster"

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
	// AllowedExecCommands is the ceiling of spec.credentials.allowedExecCommands: the exec credential
	// plugins a Registration may let through (Argo CD's image must carry them).
	AllowedExecCommands []string
	// DeniedCIDRs are the addresses no workload API server may have; nil means link-local only.
	DeniedCIDRs []netip.Prefix
	// ReconcileTimeout bounds one reconcile of one Cluster.
	ReconcileTimeout time.Duration
	// MaxResponseBytes caps every response body read from a workload API server.
	MaxResponseBytes int64

	// beforeRegister, when set, runs in the Cluster controller after it read the Registrations and
	// before it registers the Cluster for one of them. It is a test seam, not a setting: tests hold a
	// reconcile there to provoke, deterministically, the race between registering and a Registration's
	// deletion.
	beforeRegister func(ctx context.Context, registration string, cluster types.NamespacedName)
	// reconciled, when set, is told of every finished reconcile of a Cluster and when it started. It is a
	// test seam: tests change something through the API and wait for the reconcile that saw it.
	reconciled func(cluster types.NamespacedName, started time.Time)
}

// Namespaces confine the controller to the namespaces its RBAC covers, so it can run without
// cluster-wide Secret access. An empty list means every namespace.
type Namespaces struct {
	// Secrets are the namespaces fleetbridge writes Secrets in: Argo CD's and every Flux target namespace.
	Secrets []string
	// Clusters are the namespaces whose CAPI Clusters, and their kubeconfig Secrets, are read.
	Clusters []string
	// ClusterProfiles is the namespace fleetbridge publishes a ClusterProfile in for each registered
	// Cluster (SIG Multicluster's cluster inventory API); empty: none are published.
	ClusterProfiles string
}

// SecretsAllowed reports whether fleetbridge may write Secrets in namespace.
func (n Namespaces) SecretsAllowed(namespace string) bool {
	return len(n.Secrets) == 0 || slices.Contains(n.Secrets, namespace)
}

// ClustersAllowed reports whether fleetbridge reads CAPI Clusters in namespace.
func (n Namespaces) ClustersAllowed(namespace string) bool {
	return len(n.Clusters) == 0 || slices.Contains(n.Clusters, namespace)
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
	return Options{Resync: 10 * time.Minute, ProbeTimeout: 10 * time.Second, WorkloadQPS: 20, WorkloadBurst: 40, Workers: 8,
		ReconcileTimeout: time.Minute, MaxResponseBytes: 4 << 20}
}

// CacheByObject restricts the manager's Secret informers to Secrets fleetbridge owns, in the namespaces
// it may write: the registrar never caches other Secrets (CAPI kubeconfig Secrets are watched as metadata
// by a cache of their own). The cache keys these options by kind, so they confine both Secret informers
// alike: the registrar's, of whole owned Secrets, and the plugin's, of their metadata only (the plugin
// keeps no credentials, in one process with the registrar or on its own). Clusters are watched only
// where their kubeconfig Secrets may be read, and ClusterProfiles (when published) only in their namespace
// and only fleetbridge's. None keeps managedFields it does not read (a Cluster's
// are often larger than the rest of it).
func CacheByObject(ns Namespaces) map[client.Object]cache.ByObject {
	out := map[client.Object]cache.ByObject{
		&corev1.Secret{}:     {Label: owned.Selector(), Namespaces: namespaceSet(ns.Secrets), Transform: keepOwnFields},
		&clusterv1.Cluster{}: {Namespaces: namespaceSet(ns.Clusters), Transform: cache.TransformStripManagedFields()},
	}
	if ns.ClusterProfiles != "" {
		out[&clusterinventory.ClusterProfile{}] = cache.ByObject{Label: profileSelector(), Namespaces: namespaceSet([]string{ns.ClusterProfiles}),
			Transform: cache.TransformStripManagedFields()}
	}
	return out
}

// keepOwnFields drops the managedFields entries of other managers from a cached Secret: only
// fleetbridge's own entries are read (ownFields: its server-side apply, and the create that first wrote
// the Secret), and only on whole Secrets. The plugin's metadata copies keep none.
func keepOwnFields(obj any) (any, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return obj, nil
	}
	if _, partial := obj.(*metav1.PartialObjectMetadata); partial {
		o.SetManagedFields(nil)
		return obj, nil
	}
	entries := o.GetManagedFields()
	kept := entries[:0:0]
	for _, e := range entries {
		if e.Manager == owned.FieldManager {
			kept = append(kept, e)
		}
	}
	if len(kept) != len(entries) {
		o.SetManagedFields(kept)
	}
	return obj, nil
}

// Setup adds the Cluster and Registration controllers, and the ClusterProfile controller when profiles are
// published, to a manager whose cache uses CacheByObject.
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
	unownedArgo, err := newUnownedArgoCache(ctx, mgr, opts.Namespaces.Secrets)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(unownedArgo); err != nil {
		return nil, err
	}
	indexer := mgr.GetFieldIndexer()
	for field, key := range map[string]string{indexArgoServer: argocd.KeyServer, indexArgoName: argocd.KeyName} {
		if err := indexer.IndexField(ctx, &corev1.Secret{}, field, argoDataIndex(key)); err != nil {
			return nil, err
		}
	}

	if err := indexer.IndexField(ctx, &corev1.Secret{}, indexCluster, func(obj client.Object) []string {
		if key, ok := owned.ClusterOf(obj.GetLabels()); ok {
			return []string{key.String()}
		}
		return nil
	}); err != nil {
		return nil, err
	}

	conns := &connections{reader: mgr.GetAPIReader(), meta: capiSecrets, timeout: opts.ProbeTimeout,
		qps: opts.WorkloadQPS, burst: opts.WorkloadBurst, wrap: opts.WrapWorkloadTransport, m: map[types.NamespacedName]*endpoint{},
		denied: opts.DeniedCIDRs, maxResponseBytes: opts.MaxResponseBytes}
	res := newResults()
	gate := newWorkloadGate(opts.beforeRegister)
	wakeups := make(chan event.GenericEvent, 1024)
	recorder := mgr.GetEventRecorder("fleetbridge-registrar")
	renewals := newRenewalScheduler(opts.Now)
	if err := mgr.Add(renewals); err != nil {
		return nil, err
	}

	clusters := &ClusterReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder, Now: opts.Now, Resync: opts.Resync,
		Namespaces: opts.Namespaces, AllowedExecCommands: opts.AllowedExecCommands, DeniedCIDRs: opts.DeniedCIDRs,
		ReconcileTimeout: opts.ReconcileTimeout,
		conns:            conns, results: res, registrationEvents: wakeups, unownedArgo: unownedArgo,
		writer: newSecretWriter(mgr.GetClient(), mgr.GetAPIReader(), opts.Now), tokens: newTokenSource(opts.Now),
		gate: gate, reconciled: opts.reconciled, renewals: renewals,
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("cluster").
		For(&clusterv1.Cluster{}).
		WatchesRawSource(source.Kind(capiSecrets, newPartialSecret(),
			handler.TypedEnqueueRequestsFromMapFunc(kubeconfigSecretToCluster))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(ownedSecretToCluster),
			builder.WithPredicates(notOwnWrite(clusters))).
		Watches(&fleetv1.Registration{}, handler.EnqueueRequestsFromMapFunc(clusters.registrationToClusters),
			builder.WithPredicates(selectionChanged)).
		Watches(&corev1.Namespace{}, clusters.namespaceEvents()).
		WatchesRawSource(source.Channel(renewals.events, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.Workers}).
		Complete(clusters)
	if err != nil {
		return nil, err
	}

	if ns := opts.Namespaces.ClusterProfiles; ns != "" {
		clusters.profiles = newProfiles()
		profiles := &ProfileReconciler{Client: mgr.GetClient(), Namespace: ns, Recorder: recorder, Now: opts.Now, profiles: clusters.profiles}
		err = ctrl.NewControllerManagedBy(mgr).
			Named("clusterprofile").
			WatchesRawSource(source.Channel(clusters.profiles.events, &handler.EnqueueRequestForObject{})).
			Watches(&clusterinventory.ClusterProfile{}, handler.EnqueueRequestsFromMapFunc(profileToCluster)).
			Complete(profiles)
		if err != nil {
			return nil, err
		}
	}

	registrations := &RegistrationReconciler{Client: mgr.GetClient(), Recorder: recorder, ReconcileTimeout: opts.ReconcileTimeout,
		conns: conns, results: res, gate: gate}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("registration").
		For(&fleetv1.Registration{}).
		WatchesRawSource(source.Channel(wakeups, debounced(statusDebounce))).
		Complete(registrations)
	if err != nil {
		return nil, err
	}
	return &Registrar{Clusters: clusters, Registrations: registrations}, nil
}

// selectionChanged passes the Registration events that can change which Clusters it registers, or how:
// a new or deleted Registration, a spec change (a new generation), and the start of its deletion. Its
// status and finalizer updates do not; each used to enqueue the whole fleet again (and probe every
// workload cluster) several times during a cold start.
var selectionChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
			!e.ObjectOld.GetDeletionTimestamp().Equal(e.ObjectNew.GetDeletionTimestamp())
	},
}

// statusDebounce is how long a change of a cluster result waits before the Registration's status is
// computed again; the changes that arrive meanwhile join that one pass.
const statusDebounce = time.Second

// debounced enqueues the Registration a wake-up names after delay. The work queue keeps one pending
// entry per Registration, so a burst of cluster results (a cold start, one per Cluster) costs one status
// pass per delay instead of one per result, each listing the whole fleet.
func debounced(delay time.Duration) handler.EventHandler {
	return handler.Funcs{
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: e.Object.GetName()}}, delay)
		},
	}
}

// notOwnWrite drops the create and update events of the Secret versions the Cluster controller just
// wrote. Reconciling them only confirmed the write (and probed the workload cluster again): a cold start
// reconciled, and probed, every Cluster twice.
func notOwnWrite(r *ClusterReconciler) predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return !r.writer.isOwnWrite(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool { return !r.writer.isOwnWrite(e.ObjectNew) },
	}
}

// newKubeconfigSecretCache watches, as metadata only, the Secrets Cluster API labels with a cluster name.
// Their data (the admin credentials) is read on demand and never kept in an informer. The label also
// marks each Cluster's CA, etcd, service-account and front-proxy key Secrets and each Machine's
// bootstrap data: an informer of their data would list all of it, several times the kubeconfigs, at
// every start (tried: at 10,000 Clusters its peak RSS passed the chart's 512Mi limit), to save one
// read from the API server's watch cache per Cluster.
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
		DefaultTransform:     kubeconfigIdentityOnly,
	})
}

// kubeconfigIdentityOnly strips a Secret's metadata down to what the controller reads: its name and
// resourceVersion, and for a <cluster>-kubeconfig Secret the cluster-name label. Most Secrets this cache
// holds are not kubeconfigs (CA keys, bootstrap data), and their owner references, timestamps and
// labels would otherwise be most of its memory.
func kubeconfigIdentityOnly(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Namespace: m.Namespace, Name: m.Name, ResourceVersion: m.ResourceVersion}}
	if cluster := m.Labels[clusterv1.ClusterNameLabel]; cluster != "" && m.Name == kubeconfigSecretName(cluster) {
		out.Labels = map[string]string{clusterv1.ClusterNameLabel: cluster}
	}
	return out, nil
}

// newUnownedArgoCache watches the Argo CD cluster Secrets that fleetbridge does not own (hand-made, or
// written by `argocd cluster add`), in the namespaces it may write, keeping only what the duplicate
// checks compare: their labels and the server and name keys of their data, never their credentials.
func newUnownedArgoCache(ctx context.Context, mgr ctrl.Manager, namespaces []string) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:           mgr.GetHTTPClient(),
		Scheme:               mgr.GetScheme(),
		Mapper:               mgr.GetRESTMapper(),
		DefaultLabelSelector: unownedArgoClusters,
		DefaultNamespaces:    namespaceSet(namespaces),
		DefaultTransform:     argoIdentityOnly,
	})
	if err != nil {
		return nil, err
	}
	// Created now, so it starts (and syncs) with the manager rather than on the first create.
	if _, err := c.GetInformer(ctx, &corev1.Secret{}); err != nil {
		return nil, err
	}
	return c, nil
}

// argoIdentityOnly strips an Argo CD cluster Secret down to what identifies the cluster it registers.
func argoIdentityOnly(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	out := &corev1.Secret{
		TypeMeta: s.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, UID: s.UID,
			ResourceVersion: s.ResourceVersion, Labels: s.Labels},
		Data: map[string][]byte{},
	}
	for _, k := range []string{argocd.KeyServer, argocd.KeyName} {
		if v, ok := s.Data[k]; ok {
			out.Data[k] = v
		}
	}
	return out, nil
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
	if err := r.Client.List(ctx, clusters, client.UnsafeDisableDeepCopy); err == nil {
		for _, c := range clusters.Items {
			seen[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] = true
		}
	}
	secrets := &corev1.SecretList{}
	if err := r.Client.List(ctx, secrets, client.MatchingLabelsSelector{Selector: owned.ForRegistration(obj.GetName())}, client.UnsafeDisableDeepCopy); err == nil {
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
