package plugin

import (
	"context"
	"reflect"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/fleetbridge/fleetbridge/internal/fleet"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// PairLabel is the label a template puts on what a pair becomes (an Argo CD Application, a Flux
// Kustomization or HelmRelease), with the pair's `name` parameter as its value. It links the object to
// its pair; an object without it is linked by its name when that is the pair's name.
const PairLabel = "fleetbridge.io/pair"

// +kubebuilder:rbac:groups=argoproj.io,resources=applications,verbs=list;watch
// +kubebuilder:rbac:groups=kustomize.toolkit.fluxcd.io,resources=kustomizations,verbs=list;watch
// +kubebuilder:rbac:groups=helm.toolkit.fluxcd.io,resources=helmreleases,verbs=list;watch

// generatedKinds are the kinds a pair becomes; kinds whose CRD is not installed are watched once it is.
var generatedKinds = []struct {
	gvk  schema.GroupVersionKind
	argo bool
}{
	{schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Application"}, true},
	{schema.GroupVersionKind{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Kind: "Kustomization"}, false},
	{schema.GroupVersionKind{Group: "helm.toolkit.fluxcd.io", Version: "v2", Kind: "HelmRelease"}, false},
}

// generatedObjects watches the objects pairs become and keeps, of each, only its link to a pair and its
// state (generated): the informers hold no spec, no other label and no other status field. It tells
// the Workload controller which pair changed.
type generatedObjects struct {
	cache  cache.Cache
	mapper meta.RESTMapper
	log    logr.Logger
	// changed is told the pair (label value or object name) of an object that changed.
	changed func(pair string)
	// writesTo says whether a Registration writes an output to a namespace (fleet.Store.WritesTo): an
	// object counts for a pair only there (lookup).
	writesTo func(registration, output, namespace string) bool

	mu      sync.Mutex
	objects map[objectKey]generatedEntry
	byPair  map[string]map[objectKey]bool // by pair label value
	byName  map[string]map[objectKey]bool // by object name, for objects without the label
	watched map[schema.GroupVersionKind]bool
}

type objectKey struct {
	kind            string
	namespace, name string
}

type generatedEntry struct {
	pair  string // the label's value, "" without
	state generated
}

// newGeneratedObjects builds the watcher on a cache of its own, whose transform keeps only what it reads.
func newGeneratedObjects(mgr ctrl.Manager, writesTo func(registration, output, namespace string) bool, log logr.Logger) (*generatedObjects, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:       mgr.GetHTTPClient(),
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		DefaultTransform: keepPairState,
	})
	if err != nil {
		return nil, err
	}
	return &generatedObjects{cache: c, mapper: mgr.GetRESTMapper(), log: log, writesTo: writesTo,
		objects: map[objectKey]generatedEntry{}, byPair: map[string]map[objectKey]bool{}, byName: map[string]map[objectKey]bool{},
		watched: map[schema.GroupVersionKind]bool{}}, nil
}

// NeedLeaderElection: the leader's Workload controller and every replica's fleet page read it.
func (g *generatedObjects) NeedLeaderElection() bool { return false }

// generatedRecheck is how often the kinds whose CRD is missing are looked for again.
var generatedRecheck = 30 * time.Second

// Start runs the cache and watches each kind whose CRD exists, looking again for the others every
// generatedRecheck.
func (g *generatedObjects) Start(ctx context.Context) error {
	go func() {
		if err := g.cache.Start(ctx); err != nil {
			g.log.Error(err, "the cache of generated objects stopped")
		}
	}()
	tick := time.NewTicker(generatedRecheck)
	defer tick.Stop()
	for {
		g.watchInstalled(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (g *generatedObjects) watchInstalled(ctx context.Context) {
	for _, k := range generatedKinds {
		if g.isWatched(k.gvk) {
			continue
		}
		// The manager's mapper asks the API server again for a group it does not know, so a CRD
		// installed later is found at a later look.
		if _, err := g.mapper.RESTMapping(k.gvk.GroupKind(), k.gvk.Version); err != nil {
			continue
		}
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(k.gvk)
		informer, err := g.cache.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			g.log.V(1).Info("cannot watch generated objects yet", "kind", k.gvk.Kind, "error", err.Error())
			continue
		}
		argo, kind := k.argo, k.gvk.Kind
		if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { g.update(kind, argo, o) },
			UpdateFunc: func(_, o any) { g.update(kind, argo, o) },
			DeleteFunc: func(o any) { g.remove(kind, o) },
		}); err != nil {
			continue
		}
		g.mu.Lock()
		g.watched[k.gvk] = true
		g.mu.Unlock()
	}
}

func (g *generatedObjects) isWatched(gvk schema.GroupVersionKind) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.watched[gvk]
}

func (g *generatedObjects) update(kind string, argo bool, o any) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := objectKey{kind: kind, namespace: u.GetNamespace(), name: u.GetName()}
	entry := generatedEntry{pair: u.GetLabels()[PairLabel], state: stateOf(u, argo)}
	g.mu.Lock()
	old, had := g.objects[key]
	if had {
		g.unindex(key, old)
	}
	g.objects[key] = entry
	indexAdd(g.byPair, entry.pair, key)
	if entry.pair == "" {
		indexAdd(g.byName, key.name, key)
	}
	g.mu.Unlock()
	if had && reflect.DeepEqual(old, entry) {
		return
	}
	g.notify(key, entry, old, had)
}

func (g *generatedObjects) remove(kind string, o any) {
	if tomb, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = tomb.Obj
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := objectKey{kind: kind, namespace: u.GetNamespace(), name: u.GetName()}
	g.mu.Lock()
	old, had := g.objects[key]
	if had {
		g.unindex(key, old)
		delete(g.objects, key)
	}
	g.mu.Unlock()
	if had {
		g.notify(key, old, old, false)
	}
}

func (g *generatedObjects) notify(key objectKey, now, old generatedEntry, had bool) {
	if g.changed == nil {
		return
	}
	for _, pair := range []string{now.pair, old.pair} {
		if pair != "" {
			g.changed(pair)
		}
	}
	if now.pair == "" || had && old.pair == "" {
		g.changed(key.name)
	}
}

func (g *generatedObjects) unindex(key objectKey, e generatedEntry) {
	indexDrop(g.byPair, e.pair, key)
	if e.pair == "" {
		indexDrop(g.byName, key.name, key)
	}
}

func indexAdd(m map[string]map[objectKey]bool, k string, key objectKey) {
	if k == "" {
		return
	}
	if m[k] == nil {
		m[k] = map[objectKey]bool{}
	}
	m[k][key] = true
}

func indexDrop(m map[string]map[objectKey]bool, k string, key objectKey) {
	delete(m[k], key)
	if len(m[k]) == 0 {
		delete(m, k)
	}
}

// lookup is the state of what a pair became: the object labelled with the pair's name, else the one
// named like it. Anyone who may create an Application or a Kustomization can put any pair's label on
// it, so only an object in a namespace the pair's Registration writes that output to counts (Argo CD's
// namespace for an Application, a Flux namespace for a Kustomization or HelmRelease): only there can the
// object deploy to the pair's cluster with the credentials fleetbridge wrote. Two objects that count (a
// pair generated twice) report the first by kind, namespace and name.
func (g *generatedObjects) lookup(ref fleet.PairRef) (generated, bool) {
	state, _, ok := g.lookupObject(ref)
	return state, ok
}

// lookupObject is lookup, with the object it found.
func (g *generatedObjects) lookupObject(ref fleet.PairRef) (generated, objectKey, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, set := range []map[objectKey]bool{g.byPair[ref.Name], g.byName[ref.Name]} {
		var first *objectKey
		for k := range set {
			output := owned.OutputFlux
			if g.objects[k].state.argo {
				output = owned.OutputArgoCD
			}
			if g.writesTo == nil || !g.writesTo(ref.Registration, output, k.namespace) {
				continue
			}
			if first == nil || k.kind < first.kind || k.kind == first.kind && (k.namespace < first.namespace || k.namespace == first.namespace && k.name < first.name) {
				first = &k
			}
		}
		if first != nil {
			return g.objects[*first].state, *first, true
		}
	}
	return generated{}, objectKey{}, false
}

// stateOf reads the state of a generated object (kept by keepPairState).
func stateOf(u *unstructured.Unstructured, argo bool) generated {
	if argo {
		str := func(path ...string) string { v, _, _ := unstructured.NestedString(u.Object, path...); return v }
		return generated{argo: true, sync: str("status", "sync", "status"), revision: str("status", "sync", "revision"),
			health: str("status", "health", "status"), healthMessage: str("status", "health", "message")}
	}
	out := generated{}
	out.applied, _, _ = unstructured.NestedString(u.Object, "status", "lastAppliedRevision")
	out.attempted, _, _ = unstructured.NestedString(u.Object, "status", "lastAttemptedRevision")
	conditions, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conditions {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		cond := metav1.Condition{Type: str(m["type"]), Status: metav1.ConditionStatus(str(m["status"])), Reason: str(m["reason"]), Message: str(m["message"])}
		switch cond.Type {
		case "Ready":
			out.ready = &cond
		case "Reconciling":
			out.reconciling = cond.Status == metav1.ConditionTrue
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// keepPairState keeps, of a generated object, its identity, the pair label and the status fields
// stateOf reads: 20,000 Applications cost their names and a few short strings, not their specs.
func keepPairState(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(u.GetAPIVersion())
	out.SetKind(u.GetKind())
	out.SetNamespace(u.GetNamespace())
	out.SetName(u.GetName())
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	if pair := u.GetLabels()[PairLabel]; pair != "" {
		out.SetLabels(map[string]string{PairLabel: pair})
	}
	status := map[string]any{}
	copyField := func(path ...string) {
		if v, found, _ := unstructured.NestedFieldNoCopy(u.Object, append([]string{"status"}, path...)...); found {
			_ = unstructured.SetNestedField(status, v, path...)
		}
	}
	copyField("sync", "status")
	copyField("sync", "revision")
	copyField("health", "status")
	copyField("health", "message")
	copyField("lastAppliedRevision")
	copyField("lastAttemptedRevision")
	if conditions, found, _ := unstructured.NestedSlice(u.Object, "status", "conditions"); found {
		var kept []any
		for _, c := range conditions {
			if m, ok := c.(map[string]any); ok && (m["type"] == "Ready" || m["type"] == "Reconciling") {
				kept = append(kept, map[string]any{"type": m["type"], "status": m["status"], "reason": m["reason"], "message": m["message"]})
			}
		}
		if kept != nil {
			status["conditions"] = kept
		}
	}
	if len(status) > 0 {
		out.Object["status"] = status
	}
	return out, nil
}

// workloadOfPair remembers which Workload each pair belongs to, as the Workload controller last computed
// its pairs, so an object's change wakes its Workload only.
type workloadOfPair struct {
	mu sync.Mutex
	m  map[string]types.NamespacedName
	// missingSince is when a pair was first seen with nothing generated for it.
	missingSince map[string]time.Time
}

func newWorkloadOfPair() *workloadOfPair {
	return &workloadOfPair{m: map[string]types.NamespacedName{}, missingSince: map[string]time.Time{}}
}

// set records a Workload's pairs, forgetting the ones it no longer has.
func (w *workloadOfPair) set(workload types.NamespacedName, pairs []string, missing map[string]bool, now time.Time) map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := map[string]bool{}
	for _, p := range pairs {
		keep[p] = true
		w.m[p] = workload
	}
	for p, owner := range w.m {
		if owner == workload && !keep[p] {
			delete(w.m, p)
			delete(w.missingSince, p)
		}
	}
	since := map[string]time.Time{}
	for _, p := range pairs {
		if !missing[p] {
			delete(w.missingSince, p)
			continue
		}
		if _, ok := w.missingSince[p]; !ok {
			w.missingSince[p] = now
		}
		since[p] = w.missingSince[p]
	}
	return since
}

// missingSinceOf is when a pair was first seen with nothing generated for it (now when it was not).
func (w *workloadOfPair) missingSinceOf(pair string, now time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.missingSince[pair]; ok {
		return t
	}
	return now
}

func (w *workloadOfPair) get(pair string) (types.NamespacedName, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k, ok := w.m[pair]
	return k, ok
}
