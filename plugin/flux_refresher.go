package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// Flux Operator's side of the nudge (flux-operator v0.58.1 and github.com/fluxcd/pkg/apis/meta; see
// docs/flux.md for where each fact is in their source).
const (
	// FluxReconcileRequestAnnotation is Flux's reconcile request. The ResourceSetInputProvider controller
	// reconciles on any annotation change and records the value in status.lastHandledReconcileAt. It is
	// set alone, without reconcile.fluxcd.io/forceAt, so a provider's spec.schedule still decides when it
	// may poll.
	FluxReconcileRequestAnnotation = "reconcile.fluxcd.io/requestedAt"
	// FluxAnswerAnnotation is the digest of the answer a provider was last nudged for, so a restarted or
	// newly elected refresher nudges only the providers whose answer changed since.
	FluxAnswerAnnotation = "fleetbridge.io/flux-answer"

	// FluxInputsPath is the path of the endpoint ExternalService providers poll.
	FluxInputsPath = "/api/v1/flux/inputs"
	// fluxDefaultLimit is Flux Operator's DefaultResourceSetInputProviderFilterLimit: what a provider
	// keeps when spec.filter.limit is unset or not positive.
	fluxDefaultLimit = 100
)

var providerGVK = schema.GroupVersionKind{Group: "fluxcd.controlplane.io", Version: "v1", Kind: "ResourceSetInputProvider"}

// +kubebuilder:rbac:groups=fluxcd.controlplane.io,resources=resourcesetinputproviders,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// FluxRefresher nudges the Flux Operator ResourceSetInputProviders that poll this server when the inputs
// they would get change, and warns when an answer has more inputs than a provider keeps. It has the
// ApplicationSet Refresher's shape (refreshLoop, leader only).
type FluxRefresher struct {
	Client client.Client
	// Cache is the manager's cache: the providers' metadata informer, whose additions, deletions and spec
	// changes start a pass as fleet changes do.
	Cache cache.Informers
	Fleet *fleet.Store
	// Endpoints are the base URLs at which providers reach this server; a provider is nudged only when
	// its spec.url is one of them followed by FluxInputsPath.
	Endpoints FluxEndpoints
	// Tokens know the tenants, whose scopes a provider's answer is computed within.
	Tokens   *Tokens
	Interval time.Duration
	Recorder events.EventRecorder
	// Trimmed receives, after every pass, the Workloads whose pairs a provider drops; Wake enqueues each
	// Workload whose entry changed.
	Trimmed *trimmedInputs
	Wake    func(context.Context, types.NamespacedName)
	Log     logr.Logger

	specs    map[types.NamespacedName]providerSpec
	nudged   map[types.NamespacedName]string // digest last patched, until the cache shows the annotation
	warned   map[types.NamespacedName]overLimit
	changes  chan struct{}
	watching bool
}

// providerSpec is what the refresher reads from a provider's spec, valid for one generation.
type providerSpec struct {
	generation int64
	ours       bool   // type ExternalService and spec.url at this server's Flux endpoint
	query      string // the raw query of spec.url
	limit      int
}

type overLimit struct{ inputs, limit int }

// NeedLeaderElection: one replica nudges; every replica serves.
func (r *FluxRefresher) NeedLeaderElection() bool { return true }

// Start runs until ctx ends. Without endpoints nothing can be matched: it records that no Workload is
// trimmed and waits.
func (r *FluxRefresher) Start(ctx context.Context) error {
	r.specs, r.nudged, r.warned = map[types.NamespacedName]providerSpec{}, map[types.NamespacedName]string{}, map[types.NamespacedName]overLimit{}
	r.changes = make(chan struct{}, 1)
	if len(r.Endpoints) == 0 {
		r.Trimmed.set(nil)
		<-ctx.Done()
		return nil
	}
	return refreshLoop(ctx, r.Fleet, r.Interval, r.changes, r.Log, "could not refresh ResourceSetInputProviders", r.refresh)
}

// watchProviders makes a provider's creation, deletion or spec change start a pass. The informer is the
// one the pass's list started, so it exists once the CRD does; until then every pass tries again.
func (r *FluxRefresher) watchProviders(ctx context.Context) {
	if r.watching || r.Cache == nil {
		return
	}
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(providerGVK)
	inf, err := r.Cache.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
	if err != nil {
		return
	}
	changed := func() {
		select {
		case r.changes <- struct{}{}:
		default:
		}
	}
	generation := func(o any) int64 {
		if m, ok := o.(metav1.Object); ok {
			return m.GetGeneration()
		}
		return 0
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed() },
		DeleteFunc: func(any) { changed() },
		// Status updates (every poll) and annotations (the nudge itself) leave the generation alone.
		UpdateFunc: func(old, cur any) {
			if generation(old) != generation(cur) {
				changed()
			}
		},
	})
	r.watching = err == nil
}

func (r *FluxRefresher) refresh(ctx context.Context) (again bool, err error) {
	providers, err := r.providers(ctx)
	if meta.IsNoMatchError(err) {
		providers, err = nil, nil // Flux Operator is not installed here.
	}
	if err != nil {
		return false, err
	}
	r.watchProviders(ctx)
	snap := r.Fleet.Snapshot()
	answers := map[string]fluxAnswer{} // by canonical query: providers asking the same share one encoding
	trims := map[types.NamespacedName][]inputTrim{}
	seen := map[types.NamespacedName]bool{}
	over, dropped := 0, 0
	for i := range providers {
		p := &providers[i]
		key := types.NamespacedName{Namespace: p.GetNamespace(), Name: p.GetName()}
		spec := r.specs[key]
		if !spec.ours {
			continue
		}
		seen[key] = true
		scope := r.scopeOf(key.Namespace)
		q := scope.Tenant + "?" + spec.query
		a, known := answers[q]
		if !known {
			a = answerFor(snap, spec.query, scope)
			answers[q] = a
		}
		r.nudge(ctx, p, key, a.digest)
		if a.err != nil || a.inputs <= spec.limit {
			delete(r.warned, key)
			continue
		}
		over++
		dropped += a.inputs - spec.limit
		r.warn(p, key, overLimit{inputs: a.inputs, limit: spec.limit})
		for w, n := range droppedPairs(a.runs, spec.limit) {
			trims[w] = append(trims[w], inputTrim{Provider: key, Kept: spec.limit, Total: a.inputs, Dropped: n})
		}
	}
	for key := range r.nudged {
		if !seen[key] {
			delete(r.nudged, key)
		}
	}
	for key := range r.warned {
		if !seen[key] {
			delete(r.warned, key)
		}
	}
	providersOverLimit.Set(float64(over))
	inputsDropped.Set(float64(dropped))
	changed, first := r.Trimmed.set(trims)
	if first {
		// Conditions a former leader set are checked once this finding is known.
		changed = r.Fleet.WorkloadKeys()
	}
	for _, w := range changed {
		r.Wake(ctx, w)
	}
	return false, nil
}

// providers lists the providers' metadata from the manager's cache (a metadata informer: their status
// holds every exported input, which the refresher never needs) and reads the specs again only when a
// generation it does not know appears.
func (r *FluxRefresher) providers(ctx context.Context) ([]metav1.PartialObjectMetadata, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(providerGVK.GroupVersion().WithKind(providerGVK.Kind + "List"))
	if err := r.Client.List(ctx, list); err != nil {
		return nil, err
	}
	stale := false
	present := make(map[types.NamespacedName]bool, len(list.Items))
	for i := range list.Items {
		p := &list.Items[i]
		key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
		present[key] = true
		if s, ok := r.specs[key]; !ok || s.generation != p.Generation {
			stale = true
		}
	}
	if stale {
		return list.Items, r.loadSpecs(ctx)
	}
	for key := range r.specs {
		if !present[key] {
			delete(r.specs, key)
		}
	}
	return list.Items, nil
}

// loadSpecs reads every provider's spec from the API server, a page at a time.
func (r *FluxRefresher) loadSpecs(ctx context.Context) error {
	specs := map[types.NamespacedName]providerSpec{}
	for cont := ""; ; {
		page := &unstructured.UnstructuredList{}
		page.SetGroupVersionKind(providerGVK.GroupVersion().WithKind(providerGVK.Kind + "List"))
		if err := r.Client.List(ctx, page, client.Limit(100), client.Continue(cont)); err != nil {
			return err
		}
		for i := range page.Items {
			p := &page.Items[i]
			specs[client.ObjectKeyFromObject(p)] = r.specOf(p)
		}
		if cont = page.GetContinue(); cont == "" {
			break
		}
	}
	r.specs = specs
	return nil
}

func (r *FluxRefresher) specOf(p *unstructured.Unstructured) providerSpec {
	s := providerSpec{generation: p.GetGeneration(), limit: fluxDefaultLimit}
	typ, _, _ := unstructured.NestedString(p.Object, "spec", "type")
	raw, _, _ := unstructured.NestedString(p.Object, "spec", "url")
	if limit, found, _ := unstructured.NestedInt64(p.Object, "spec", "filter", "limit"); found && limit > 0 {
		s.limit = int(limit)
	}
	if typ == "ExternalService" {
		s.query, s.ours = r.Endpoints.Match(raw)
	}
	return s
}

// nudge sets the reconcile request on a provider whose answer differs from the one it was last nudged for.
func (r *FluxRefresher) nudge(ctx context.Context, p *metav1.PartialObjectMetadata, key types.NamespacedName, digest string) {
	if p.GetAnnotations()[FluxAnswerAnnotation] == digest || r.nudged[key] == digest {
		return
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		FluxReconcileRequestAnnotation: time.Now().UTC().Format(time.RFC3339Nano),
		FluxAnswerAnnotation:           digest,
	}}})
	obj := providerRef(p)
	if err := r.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if !apierrors.IsNotFound(err) {
			r.Log.Info("could not refresh ResourceSetInputProvider", "resourceSetInputProvider", key, "error", err.Error())
		}
		return
	}
	r.nudged[key] = digest
	providerRefreshes.Inc()
	r.Log.V(1).Info("refreshed ResourceSetInputProvider", "resourceSetInputProvider", key)
}

// warn records a Warning Event on a provider whose answer is over its limit, once per count and limit.
// The message holds only the provider's own numbers: its readers may not read the Workloads behind them.
func (r *FluxRefresher) warn(p *metav1.PartialObjectMetadata, key types.NamespacedName, now overLimit) {
	if r.warned[key] == now {
		return
	}
	r.warned[key] = now
	r.Recorder.Eventf(providerRef(p), nil, corev1.EventTypeWarning, fleetv1.ReasonInputLimitExceeded, "Refresh",
		"fleetbridge answers this provider with %d inputs and spec.filter.limit keeps the first %d, so Flux Operator drops %d; raise spec.filter.limit (at most 10000) or split the query across providers",
		now.inputs, now.limit, now.inputs-now.limit)
}

// providerRef is a provider as the client and the Event recorder address it (kind, namespace, name, UID).
func providerRef(p *metav1.PartialObjectMetadata) *metav1.PartialObjectMetadata {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(providerGVK)
	obj.SetNamespace(p.GetNamespace())
	obj.SetName(p.GetName())
	obj.SetUID(p.GetUID())
	obj.SetResourceVersion(p.GetResourceVersion())
	return obj
}

// fluxAnswer is what GET /api/v1/flux/inputs would answer a query now.
type fluxAnswer struct {
	digest string
	inputs int
	runs   []fleet.WorkloadRun // the answer's Workloads in order, with their pairs
	err    error               // the server would refuse the query, or the answer is too large
}

// scopeOf is the scope a provider in a namespace most likely asks with: the tenant whose Workload
// namespaces hold it (the chart writes a tenant's token there by default), else the full scope, whose
// answer changes whenever a narrower one does. The token, not this guess, decides what the provider
// gets; the guess only decides when to nudge and what to warn about.
func (r *FluxRefresher) scopeOf(namespace string) *Scope {
	if r.Tokens != nil {
		if scope := r.Tokens.ScopeOfNamespace(namespace); scope != nil {
			return scope
		}
	}
	return AdminScope()
}

// answerFor digests the answer to a provider's query within a scope; a refusal digests as its message,
// so fixing it is a change too.
func answerFor(snap *fleet.Snapshot, rawQuery string, scope *Scope) fluxAnswer {
	q, err := parseFluxRawQuery(rawQuery)
	if err != nil {
		return errorAnswer(err)
	}
	filter, err := q.filter(scope, snap)
	if err != nil {
		return errorAnswer(err)
	}
	answer, err := snap.Answer(filter, fluxProtocol.style)
	if err != nil {
		return errorAnswer(err)
	}
	defer answer.Release()
	if answer.Size()+int64(len(fluxProtocol.open)+len(fluxProtocol.closing)) > fluxProtocol.clientMaxBytes {
		return errorAnswer(fmt.Errorf("the answer is over the 900 KiB Flux Operator accepts"))
	}
	digest := answer.Digest()
	return fluxAnswer{digest: hex.EncodeToString(digest[:16]), inputs: answer.Len(), runs: answer.WorkloadRuns()}
}

func errorAnswer(err error) fluxAnswer {
	sum := sha256.Sum256([]byte(err.Error()))
	return fluxAnswer{digest: "error-" + hex.EncodeToString(sum[:16]), err: err}
}

// droppedPairs counts, per Workload, the pairs of an answer that lie past limit: Flux Operator keeps the
// first limit inputs, and the answer lists each Workload's pairs together (runs, in answer order).
func droppedPairs(runs []fleet.WorkloadRun, limit int) map[types.NamespacedName]int {
	out := map[types.NamespacedName]int{}
	pos := 0
	for _, run := range runs {
		end := pos + run.Pairs
		if from := max(pos, limit); end > from {
			out[run.Workload] = end - from
		}
		pos = end
	}
	return out
}

// FluxEndpoints are base URLs (scheme://host[:port][/prefix]) at which Flux Operator reaches this server,
// such as the plugin Service's in-cluster names.
type FluxEndpoints []fluxEndpoint

type fluxEndpoint struct{ scheme, host, port, path string }

// ParseFluxEndpoints reads base URLs; each needs an http or https scheme and a host, and may carry a path
// prefix (a proxy in front of the server) but no query.
func ParseFluxEndpoints(raw []string) (FluxEndpoints, error) {
	var out FluxEndpoints
	for _, s := range raw {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("flux endpoint %q: want http(s)://host[:port][/prefix]", s)
		}
		out = append(out, endpointOf(u))
	}
	return out, nil
}

// Match says whether a provider's spec.url is the Flux endpoint at one of the base URLs, and returns its
// query. Schemes and hosts compare case-insensitively and a default port equals an omitted one.
func (e FluxEndpoints) Match(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", false
	}
	got := endpointOf(u)
	for _, base := range e {
		if got.scheme == base.scheme && got.host == base.host && got.port == base.port && got.path == base.path+FluxInputsPath {
			return u.RawQuery, true
		}
	}
	return "", false
}

func endpointOf(u *url.URL) fluxEndpoint {
	e := fluxEndpoint{scheme: strings.ToLower(u.Scheme), host: strings.TrimSuffix(strings.ToLower(u.Hostname()), "."), port: u.Port(), path: strings.TrimSuffix(u.EscapedPath(), "/")}
	if e.port == "" {
		e.port = map[string]string{"http": "80", "https": "443"}[e.scheme]
	}
	if ip := net.ParseIP(e.host); ip != nil {
		e.host = ip.String()
	}
	return e
}

// inputTrim is one provider dropping some of a Workload's pairs: it keeps Kept of Total inputs, and
// Dropped of those past Kept are the Workload's.
type inputTrim struct {
	Provider             types.NamespacedName
	Kept, Total, Dropped int
}

// trimmedInputs is the Flux refresher's last finding, per Workload, which the Workload controller reads.
// Until the first pass it is not known, and the controller keeps the InputsTrimmed condition it finds
// (a new leader must not clear what the old one set before it has looked).
type trimmedInputs struct {
	mu         sync.Mutex
	known      bool
	byWorkload map[types.NamespacedName][]inputTrim
}

// get returns the trims of one Workload and whether the refresher has looked yet (never, without one).
func (t *trimmedInputs) get(w types.NamespacedName) ([]inputTrim, bool) {
	if t == nil {
		return nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byWorkload[w], t.known
}

// set replaces the finding and returns the Workloads whose trims changed, and whether it is the first.
func (t *trimmedInputs) set(next map[types.NamespacedName][]inputTrim) (changed []types.NamespacedName, first bool) {
	if t == nil {
		return nil, false
	}
	for _, trims := range next {
		sort.Slice(trims, func(i, j int) bool {
			a, b := trims[i].Provider, trims[j].Provider
			return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
		})
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for w, trims := range next {
		if !slices.Equal(t.byWorkload[w], trims) {
			changed = append(changed, w)
		}
	}
	for w := range t.byWorkload {
		if _, still := next[w]; !still {
			changed = append(changed, w)
		}
	}
	first = !t.known
	t.byWorkload, t.known = next, true
	return changed, first
}

// wakeWorkload enqueues one Workload through the controller's wake-up channel.
func wakeWorkload(wake chan<- event.GenericEvent) func(context.Context, types.NamespacedName) {
	return func(ctx context.Context, key types.NamespacedName) {
		obj := &fleetv1.Workload{}
		obj.Namespace, obj.Name = key.Namespace, key.Name
		select {
		case wake <- event.GenericEvent{Object: obj}:
		case <-ctx.Done():
		}
	}
}
