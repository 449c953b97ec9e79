package fleet

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// Store keeps the fleet in memory, fed by informer events, and hands out immutable snapshots rebuilt
// only after a change, so a request never lists or copies objects. It knows owned Secrets by their
// metadata only (SecretMetadata): no credential ever enters it.
type Store struct {
	mu        sync.Mutex
	secrets   map[types.NamespacedName]*metav1.PartialObjectMetadata
	capi      map[types.NamespacedName]*clusterv1.Cluster
	workloads map[types.NamespacedName]*fleetv1.Workload
	// Registrations and namespace labels decide which namespaces may hold a Registration's Secrets:
	// both are written by the platform team, the Secrets also by whoever administers their namespace.
	registrations map[string]*fleetv1.Registration
	namespaces    map[string]map[string]string
	version       uint64
	snap          *Snapshot
	synced        []func() bool
	listeners     []chan struct{}

	// Conversions kept across snapshots, keyed by object and valid while its resourceVersion (and the
	// CAPI Cluster's) is unchanged, so a change re-encodes one object, not the fleet.
	clusterConv  map[types.NamespacedName]clusterConversion
	workloadConv map[types.NamespacedName]workloadConversion
}

type clusterConversion struct {
	secretRV, capiRV string
	cluster          Cluster
	ok               bool
}

// workloadConversion is a Workload's conversion at rv. When that version is invalid (err), workload is
// the last valid version's, if there was one (valid).
type workloadConversion struct {
	rv       string
	workload Workload
	err      error
	valid    bool
}

// Snapshot is the fleet at one version. Treat it as read-only.
type Snapshot struct {
	Version   uint64
	Clusters  []Cluster
	Workloads []Workload
	// Invalid maps a Workload whose current version cannot be used to the reason; its last valid
	// version, if any, is still in Workloads.
	Invalid map[types.NamespacedName]error
}

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{
		secrets:   map[types.NamespacedName]*metav1.PartialObjectMetadata{},
		capi:      map[types.NamespacedName]*clusterv1.Cluster{},
		workloads: map[types.NamespacedName]*fleetv1.Workload{},

		registrations: map[string]*fleetv1.Registration{},
		namespaces:    map[string]map[string]string{},

		clusterConv:  map[types.NamespacedName]clusterConversion{},
		workloadConv: map[types.NamespacedName]workloadConversion{},
	}
}

// SecretMetadata is a Secret as the Store sees it: metadata only, with the Secret kind. Its informer
// lists and watches Secrets without their data, so the process never receives the credentials.
func SecretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// Add puts an object into the Store as an informer add or update event does: a Secret's metadata
// (the Store watches no other kind as metadata), a CAPI Cluster or a Workload.
func (s *Store) Add(obj client.Object) { s.set(obj) }

// Watch feeds the Store from a cache's informers: owned Secrets as metadata only, CAPI Clusters,
// Workloads, Registrations and Namespaces. The cache's options for Secrets (label selector, namespaces, transform) apply to the
// metadata informer too: a cache keys them by kind.
func (s *Store) Watch(ctx context.Context, c cache.Cache) error {
	for _, obj := range []client.Object{SecretMetadata(), &clusterv1.Cluster{}, &fleetv1.Workload{}, &fleetv1.Registration{}, &corev1.Namespace{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { s.set(o) },
			UpdateFunc: func(_, o any) { s.set(o) },
			DeleteFunc: func(o any) { s.remove(o) },
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.synced = append(s.synced, reg.HasSynced)
		s.mu.Unlock()
	}
	return nil
}

// Synced says whether every watched informer has delivered its initial list. Until then the Store's
// answer is incomplete and must not be served.
func (s *Store) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.synced) == 0 {
		return false
	}
	for _, f := range s.synced {
		if !f() {
			return false
		}
	}
	return true
}

// Subscribe returns a channel that receives a value (coalesced) after the fleet changed.
func (s *Store) Subscribe() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{}, 1)
	s.listeners = append(s.listeners, ch)
	return ch
}

func (s *Store) set(o any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch obj := o.(type) {
	case *metav1.PartialObjectMetadata:
		if !owned.IsOwned(obj.Labels) {
			return
		}
		s.secrets[client.ObjectKeyFromObject(obj)] = obj
	case *clusterv1.Cluster:
		s.capi[client.ObjectKeyFromObject(obj)] = obj
	case *fleetv1.Workload:
		s.workloads[client.ObjectKeyFromObject(obj)] = obj
	case *fleetv1.Registration:
		s.registrations[obj.Name] = obj
	case *corev1.Namespace:
		if maps.Equal(s.namespaces[obj.Name], obj.Labels) && s.namespaces[obj.Name] != nil {
			return
		}
		s.namespaces[obj.Name] = maps.Clone(obj.Labels)
		if s.namespaces[obj.Name] == nil {
			s.namespaces[obj.Name] = map[string]string{}
		}
	default:
		return
	}
	s.bump()
}

func (s *Store) remove(o any) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	obj, ok := o.(client.Object)
	if !ok {
		return
	}
	key := client.ObjectKeyFromObject(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch obj.(type) {
	case *metav1.PartialObjectMetadata:
		delete(s.secrets, key)
	case *clusterv1.Cluster:
		delete(s.capi, key)
	case *fleetv1.Workload:
		delete(s.workloads, key)
	case *fleetv1.Registration:
		delete(s.registrations, key.Name)
	case *corev1.Namespace:
		delete(s.namespaces, key.Name)
	}
	s.bump()
}

func (s *Store) bump() {
	s.version++
	for _, ch := range s.listeners {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// RegistrationOf is what a Registration says of one of its clusters: its credentials mode and, when it
// lists the cluster among its failures, the reason and message. ok is false for an unknown Registration.
func (s *Store) RegistrationOf(name string, cluster types.NamespacedName) (mode, reason, message string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reg := s.registrations[name]
	if reg == nil {
		return "", "", "", false
	}
	mode = string(reg.Spec.Credentials.Mode)
	if mode == "" {
		mode = string(fleetv1.CredentialsServiceAccountToken)
	}
	for _, f := range reg.Status.Failures {
		if f.Namespace == cluster.Namespace && f.Name == cluster.Name {
			return mode, f.Reason, f.Message, true
		}
	}
	return mode, "", "", true
}

// Snapshot returns the current fleet, rebuilding it only if something changed since the last call.
func (s *Store) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil && s.snap.Version == s.version {
		return s.snap
	}
	snap := &Snapshot{Version: s.version, Invalid: map[types.NamespacedName]error{}}
	// One cluster per Registration and CAPI Cluster. Its Argo CD Secret is preferred over Flux copies,
	// and Flux copies by namespace, so the choice never depends on map order.
	type regCluster struct {
		reg     string
		cluster types.NamespacedName
	}
	type chosen struct {
		cluster Cluster
		argo    bool
		from    string // the Secret's namespace
	}
	best := map[regCluster]chosen{}
	liveSecrets := make(map[types.NamespacedName]bool, len(s.secrets))
	writes := map[[3]string]bool{} // (Registration, output, namespace) -> writesTo
	for skey, secret := range s.secrets {
		liveSecrets[skey] = true
		key, ok := owned.ClusterOf(secret.Labels)
		if !ok {
			continue
		}
		capi := s.capi[key]
		if capi == nil || !capi.DeletionTimestamp.IsZero() {
			continue
		}
		// Only a namespace the named Registration writes to may speak for it: a tenant who forges a
		// Secret in its own namespace cannot put a cluster into another tenant's Registration.
		target := [3]string{secret.Labels[owned.LabelRegistration], secret.Labels[owned.LabelOutput], secret.Namespace}
		allowed, decided := writes[target]
		if !decided {
			// Memoized: a fleet has many Secrets but few Registrations and namespaces.
			allowed = s.writesTo(target[0], target[1], target[2])
			writes[target] = allowed
		}
		if !allowed {
			continue
		}
		conv, cached := s.clusterConv[skey]
		if !cached || conv.secretRV != secret.ResourceVersion || conv.capiRV != capi.ResourceVersion || secret.ResourceVersion == "" {
			c, ok := ClusterFromSecret(secret, capi)
			conv = clusterConversion{secretRV: secret.ResourceVersion, capiRV: capi.ResourceVersion, cluster: c.withFragment(), ok: ok}
			s.clusterConv[skey] = conv
		}
		if !conv.ok {
			continue
		}
		c := conv.cluster
		id := regCluster{c.Registration, key}
		isArgo := secret.Labels[owned.LabelOutput] == owned.OutputArgoCD
		if prev, seen := best[id]; seen && (prev.argo || (!isArgo && prev.from < secret.Namespace)) {
			continue
		}
		best[id] = chosen{cluster: c, argo: isArgo, from: secret.Namespace}
	}
	for k := range s.clusterConv {
		if !liveSecrets[k] {
			delete(s.clusterConv, k)
		}
	}
	for _, c := range best {
		snap.Clusters = append(snap.Clusters, c.cluster)
	}
	sort.Slice(snap.Clusters, func(i, j int) bool { return clusterLess(snap.Clusters[i], snap.Clusters[j]) })
	for key, w := range s.workloads {
		if !w.DeletionTimestamp.IsZero() {
			continue
		}
		conv, cached := s.workloadConv[key]
		if !cached || conv.rv != w.ResourceVersion || w.ResourceVersion == "" {
			converted, err := WorkloadFrom(w)
			next := workloadConversion{rv: w.ResourceVersion, workload: converted, err: err}
			if err != nil && cached && conv.valid {
				// An edit that breaks a Workload keeps its last valid version in answers: dropping it
				// would shrink them, and Argo CD would delete its Applications.
				next.workload, next.valid = conv.workload, true
			}
			next.valid = next.valid || err == nil
			conv = next
			s.workloadConv[key] = conv
		}
		if conv.err != nil {
			snap.Invalid[key] = conv.err
		}
		if conv.valid {
			snap.Workloads = append(snap.Workloads, conv.workload)
		}
	}
	for k := range s.workloadConv {
		if s.workloads[k] == nil {
			delete(s.workloadConv, k)
		}
	}
	sort.Slice(snap.Workloads, func(i, j int) bool {
		a, b := snap.Workloads[i], snap.Workloads[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	s.snap = snap
	return snap
}

// WritesTo says whether a Registration writes its output to a namespace: Argo CD's namespace for the
// Argo CD output, a listed or selected namespace for Flux.
func (s *Store) WritesTo(registration, output, namespace string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writesTo(registration, output, namespace)
}

// writesTo is WritesTo; call with mu held.
func (s *Store) writesTo(registration, output, namespace string) bool {
	reg := s.registrations[registration]
	if reg == nil {
		return false
	}
	switch output {
	case owned.OutputArgoCD:
		if reg.Spec.ArgoCD == nil {
			return false
		}
		// The API server defaults the namespace; a Registration built in memory may not have it.
		return cmp.Or(reg.Spec.ArgoCD.Namespace, "argocd") == namespace
	case owned.OutputFlux:
		if reg.Spec.Flux == nil {
			return false
		}
		if slices.Contains(reg.Spec.Flux.Namespaces, namespace) {
			return true
		}
		nsLabels, known := s.namespaces[namespace]
		if reg.Spec.Flux.NamespaceSelector == nil || !known {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(reg.Spec.Flux.NamespaceSelector)
		return err == nil && sel.Matches(labels.Set(nsLabels))
	}
	return false
}

// WorkloadKeys lists the Workloads the Store knows.
func (s *Store) WorkloadKeys() []types.NamespacedName {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]types.NamespacedName, 0, len(s.workloads))
	for k := range s.workloads {
		out = append(out, k)
	}
	return out
}
