package plugin

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// Options configure the plugin inside the manager.
type Options struct {
	// Addr is the plugin's listen address.
	Addr string
	// TokensDir holds the accepted bearer tokens, one per file (a mounted Secret).
	TokensDir string
	// TenantsFile declares the tenants whose tokens TokensDir holds (see TenantsFile).
	TenantsFile string
	// Token, when set, is accepted as well, with the full scope (local runs and the demo).
	Token string
	// ConfigMaps are the Argo CD plugin ConfigMaps that point at this server, by name, each with the
	// tenant whose token it carries ("" for the full scope); ApplicationSets using them are refreshed
	// when their answer changes.
	ConfigMaps map[string]string
	// MaxAnswerBytes bounds an answer (0: DefaultMaxAnswerBytes).
	MaxAnswerBytes int64
	// FluxURLs are the base URLs at which Flux Operator's ResourceSetInputProviders reach this server;
	// providers polling <base>/api/v1/flux/inputs are refreshed when their answer changes.
	FluxURLs []string
	// RefreshInterval is the shortest time between two refresh passes.
	RefreshInterval time.Duration
	// MissingGrace is how long a pair may have nothing generated for it before Workload status counts it
	// Missing (0: DefaultMissingGrace).
	MissingGrace time.Duration
	// PageAddr is the fleet page's listen address ("" serves none).
	PageAddr string
	// ArgoCDURL is Argo CD's UI, for the page's links to Applications ("" links nowhere).
	ArgoCDURL string
}

// The plugin lists and watches owned Secrets as metadata only (fleet.SecretMetadata); RBAC cannot grant
// a list without data, so the verbs are list and watch, and never get.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=fleetbridge.io,resources=registrations,verbs=get;list;watch

// Setup adds the plugin server (on every replica), the ApplicationSet and Flux refreshers (leader only) and the
// Workload status controller to a manager. The manager's cache must hold owned Secrets (their metadata,
// confined as registrar.CacheByObject confines Secrets), CAPI Clusters and Workloads.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) (*fleet.Store, error) {
	store := fleet.NewStore()
	if err := store.Watch(ctx, mgr.GetCache()); err != nil {
		return nil, err
	}
	log := mgr.GetLogger().WithName("plugin")
	tokens, err := NewTokens(TokenSource{Dir: opts.TokensDir, TenantsFile: opts.TenantsFile, Static: []string{opts.Token},
		ReloadEvery: 10 * time.Second, Log: log})
	if err != nil {
		return nil, err
	}
	srv := NewServer(store, tokens, log, opts.MaxAnswerBytes)
	if err := mgr.Add(serverRunnable{srv: srv, addr: opts.Addr}); err != nil {
		return nil, err
	}
	appSets, err := newAppSetCache(mgr)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(leaderOnly{appSets}); err != nil {
		return nil, err
	}
	if err := mgr.Add(&Refresher{Client: mgr.GetClient(), AppSets: appSets, Fleet: store, ConfigMaps: opts.ConfigMaps, Tokens: tokens,
		Interval: opts.RefreshInterval, Log: log}); err != nil {
		return nil, err
	}

	wake := make(chan event.GenericEvent, 1024)
	endpoints, err := ParseFluxEndpoints(opts.FluxURLs)
	if err != nil {
		return nil, err
	}
	trimmed := &trimmedInputs{}
	if err := mgr.Add(&FluxRefresher{Client: mgr.GetClient(), Cache: mgr.GetCache(), Fleet: store, Endpoints: endpoints, Tokens: tokens, Interval: opts.RefreshInterval,
		Recorder: mgr.GetEventRecorder("fleetbridge-plugin"), Trimmed: trimmed, Wake: wakeWorkload(wake), Log: log}); err != nil {
		return nil, err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return forwardWorkloadWakeups(ctx, store, wake)
	})); err != nil {
		return nil, err
	}
	generatedObjs, err := newGeneratedObjects(mgr, store.WritesTo, log)
	if err != nil {
		return nil, err
	}
	owners := newWorkloadOfPair()
	fleetWake := make(chan event.GenericEvent, 1024)
	generatedObjs.changed = func(pair string) {
		if key, ok := owners.get(pair); ok {
			obj := &fleetv1.Workload{}
			obj.Namespace, obj.Name = key.Namespace, key.Name
			fleetWake <- event.GenericEvent{Object: obj}
		}
	}
	if err := mgr.Add(generatedObjs); err != nil {
		return nil, err
	}
	grace := opts.MissingGrace
	if grace == 0 {
		grace = DefaultMissingGrace
	}
	if opts.PageAddr != "" {
		page, err := NewPageServer(store, store, generatedObjs, owners, grace, opts.ArgoCDURL, log.WithName("page"))
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(pageRunnable{srv: page, addr: opts.PageAddr}); err != nil {
			return nil, err
		}
	}
	return store, ctrl.NewControllerManagedBy(mgr).
		Named("workload").
		For(&fleetv1.Workload{}).
		WatchesRawSource(source.Channel(wake, &handler.EnqueueRequestForObject{})).
		WatchesRawSource(source.Channel(fleetWake, coalesced(statusCoalesce))).
		Complete(&WorkloadReconciler{Client: mgr.GetClient(), Fleet: store, Trimmed: trimmed,
			Generated: generatedObjs, Owners: owners, MissingGrace: grace, Now: time.Now})
}

// DefaultMissingGrace is how long a pair may have nothing generated for it before it counts as Missing:
// Argo CD and Flux Operator generate at their next refresh, which the refreshers bring forward.
const DefaultMissingGrace = 5 * time.Minute

// statusCoalesce is how long a change of a generated object waits before its Workload's status is
// computed again; the changes that arrive meanwhile (a rollout syncing many clusters) join that pass.
const statusCoalesce = time.Second

// coalesced enqueues the Workload a wake-up names after delay; the work queue keeps one pending entry
// per Workload.
func coalesced(delay time.Duration) handler.EventHandler {
	return handler.Funcs{
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: e.Object.GetNamespace(), Name: e.Object.GetName()}}, delay)
		},
	}
}

// forwardWorkloadWakeups enqueues every Workload whenever the fleet changes (coalesced).
func forwardWorkloadWakeups(ctx context.Context, store *fleet.Store, wake chan<- event.GenericEvent) error {
	changes := store.Subscribe()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
			if !store.Synced() {
				continue
			}
			for _, w := range store.WorkloadKeys() {
				obj := &fleetv1.Workload{}
				obj.Namespace, obj.Name = w.Namespace, w.Name
				select {
				case wake <- event.GenericEvent{Object: obj}:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

// pageRunnable serves the fleet page on every replica.
type pageRunnable struct {
	srv  *PageServer
	addr string
}

func (p pageRunnable) Start(ctx context.Context) error { return p.srv.Run(ctx, p.addr) }
func (p pageRunnable) NeedLeaderElection() bool        { return false }

// leaderOnly runs a cache that only the leader's runnables read.
type leaderOnly struct{ cache.Cache }

func (leaderOnly) NeedLeaderElection() bool { return true }

// serverRunnable runs the HTTP server on every replica: answering does not need leadership.
type serverRunnable struct {
	srv  *Server
	addr string
}

func (s serverRunnable) Start(ctx context.Context) error { return s.srv.Run(ctx, s.addr) }
func (s serverRunnable) NeedLeaderElection() bool        { return false }
