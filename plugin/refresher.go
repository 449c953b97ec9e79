package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// RefreshAnnotation makes Argo CD regenerate an ApplicationSet at once instead of at its requeue
// (30 minutes by default for plugin generators). Argo CD removes it after the refresh.
const RefreshAnnotation = "argocd.argoproj.io/application-set-refresh"

// +kubebuilder:rbac:groups=argoproj.io,resources=applicationsets,verbs=get;list;watch;patch

// Refresher nudges the ApplicationSets that use fleetbridge's plugin when the pairs they would get
// change. Changes are coalesced: it runs at most once per Interval, and nudges only ApplicationSets whose
// answer actually changed since it last looked.
type Refresher struct {
	Client client.Client
	Fleet  *fleet.Store
	// ConfigMaps are the plugin ConfigMap names (configMapRef.name) that point at this server, each with
	// the tenant whose token it carries ("" for the full scope): an answer is hashed within that scope.
	ConfigMaps map[string]string
	// Tokens know the tenants' scopes.
	Tokens   *Tokens
	Interval time.Duration
	Log      logr.Logger
	// AppSets lists the ApplicationSets, from a cache that drops their status (newAppSetCache): an
	// ApplicationSet's status lists every Application it generated, megabytes at fleet scale, and the
	// refresher reads only the spec and annotations. Client only patches.
	AppSets client.Reader

	answers map[types.NamespacedName]string // ApplicationSet -> hash of the pairs it got last time
}

// newAppSetCache is a cache of ApplicationSets without their status and managedFields.
func newAppSetCache(mgr ctrl.Manager) (cache.Cache, error) {
	return cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(),
		Scheme:     mgr.GetScheme(),
		Mapper:     mgr.GetRESTMapper(),
		DefaultTransform: func(obj any) (any, error) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				delete(u.Object, "status")
				u.SetManagedFields(nil)
			}
			return obj, nil
		},
	})
}

// refreshParallelism bounds the ApplicationSet patches of one pass in flight together.
const refreshParallelism = 8

// NeedLeaderElection: one replica nudges; every replica serves.
func (r *Refresher) NeedLeaderElection() bool { return true }

// Start runs until ctx ends.
func (r *Refresher) Start(ctx context.Context) error {
	r.answers = map[types.NamespacedName]string{}
	return refreshLoop(ctx, r.Fleet, r.Interval, nil, r.Log, "could not refresh ApplicationSets", r.refresh)
}

// refreshLoop is the one shape of the nudgers (ApplicationSets, Flux input providers): pass runs once
// the fleet has synced and when the fleet changed (or a value arrived on more, a nudger's own trigger)
// since the last pass that settled, at most once per interval. The first change after a quiet interval
// runs a pass at once; the changes that follow within the interval wait for its end and share one pass.
// A failed pass, or one that left a change for later (again), runs again an interval later.
func refreshLoop(ctx context.Context, f *fleet.Store, interval time.Duration, more <-chan struct{}, log logr.Logger, failure string, pass func(context.Context) (again bool, err error)) error {
	changes := f.Subscribe()
	dirty := true
	var last time.Time
	for {
		var due <-chan time.Time
		if dirty {
			due = time.After(max(0, interval-time.Since(last)))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
			dirty = true
		case <-more:
			dirty = true
		case <-due:
			last = time.Now()
			if !f.Synced() {
				continue
			}
			again, err := pass(ctx)
			if err != nil {
				log.V(1).Info(failure, "error", err.Error())
				continue
			}
			dirty = again
		}
	}
}

// refresh nudges each ApplicationSet whose answer changed since its last nudge. One whose last nudge
// Argo CD has not finished (the annotation is still there) is left for a later pass (again): Argo CD
// removes the annotation only at the end of the reconcile, and may have read its answer before the
// change, so the change is nudged once the annotation is gone.
func (r *Refresher) refresh(ctx context.Context) (again bool, err error) {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("argoproj.io/v1alpha1")
	list.SetKind("ApplicationSetList")
	if err := r.AppSets.List(ctx, list); err != nil {
		if meta.IsNoMatchError(err) {
			return false, nil // Argo CD is not installed here.
		}
		return false, err
	}
	snap := r.Fleet.Snapshot()
	seen := map[types.NamespacedName]bool{}
	type nudge struct {
		appSet *unstructured.Unstructured
		hash   string
	}
	var due []nudge
	for i := range list.Items {
		appSet := &list.Items[i]
		key := client.ObjectKeyFromObject(appSet)
		inputs := pluginInputs(appSet.Object["spec"], r.ConfigMaps)
		if len(inputs) == 0 {
			continue
		}
		seen[key] = true
		hash := answerHash(snap, inputs, r.scopeOf)
		if prev, known := r.answers[key]; known && prev == hash {
			continue
		}
		if _, pending := appSet.GetAnnotations()[RefreshAnnotation]; pending {
			again = true
			continue
		}
		due = append(due, nudge{appSet: appSet, hash: hash})
	}
	// The patches go out together: an ApplicationSet with thousands of Applications in its status costs
	// the API server seconds per write, and in sequence the last refresh would wait for the sum.
	failed := make([]bool, len(due))
	var wg sync.WaitGroup
	limit := make(chan struct{}, refreshParallelism)
	for i, n := range due {
		wg.Add(1)
		limit <- struct{}{}
		go func() {
			defer func() { <-limit; wg.Done() }()
			key := client.ObjectKeyFromObject(n.appSet)
			target := &unstructured.Unstructured{}
			target.SetGroupVersionKind(n.appSet.GroupVersionKind())
			target.SetNamespace(key.Namespace)
			target.SetName(key.Name)
			patch := []byte(`{"metadata":{"annotations":{"` + RefreshAnnotation + `":"true"}}}`)
			if err := r.Client.Patch(ctx, target, client.RawPatch(types.MergePatchType, patch)); err != nil {
				r.Log.Info("could not refresh ApplicationSet", "applicationSet", key, "error", err.Error())
				failed[i] = true
				return
			}
			refreshes.Inc()
			r.Log.V(1).Info("refreshed ApplicationSet", "applicationSet", key)
		}()
	}
	wg.Wait()
	for i, n := range due {
		if failed[i] {
			again = true
			continue
		}
		r.answers[client.ObjectKeyFromObject(n.appSet)] = n.hash
	}
	for key := range r.answers {
		if !seen[key] {
			delete(r.answers, key)
		}
	}
	return again, nil
}

// scopeOf is the scope of a ConfigMap's tenant; a tenant the tokens do not declare (yet) hashes as
// the full scope, whose answer changes whenever a narrower one does.
func (r *Refresher) scopeOf(tenant string) *Scope {
	if tenant != "" && r.Tokens != nil {
		if scope := r.Tokens.TenantScope(tenant); scope != nil {
			return scope
		}
	}
	return AdminScope()
}

// pluginInput is one plugin generator's input and the tenant of the ConfigMap it uses.
type pluginInput struct {
	tenant     string
	parameters json.RawMessage
}

// pluginInputs finds, anywhere in an ApplicationSet spec (matrix and merge generators nest), the input
// parameters of plugin generators whose configMapRef names one of ours.
func pluginInputs(node any, configMaps map[string]string) []pluginInput {
	var out []pluginInput
	switch n := node.(type) {
	case map[string]any:
		if plugin, ok := n["plugin"].(map[string]any); ok {
			name, _, _ := unstructured.NestedString(plugin, "configMapRef", "name")
			if tenant, ours := configMaps[name]; ours {
				params, found, _ := unstructured.NestedFieldNoCopy(plugin, "input", "parameters")
				var raw json.RawMessage
				if found {
					raw, _ = json.Marshal(params)
				}
				out = append(out, pluginInput{tenant: tenant, parameters: raw})
			}
		}
		for k, v := range n {
			if k != "template" {
				out = append(out, pluginInputs(v, configMaps)...)
			}
		}
	case []any:
		for _, v := range n {
			out = append(out, pluginInputs(v, configMaps)...)
		}
	}
	return out
}

// answerHash digests what the server would answer for each input, streaming the answer into the hash
// without building it; an input it would refuse hashes as its error, so fixing it also triggers a
// refresh.
func answerHash(snap *fleet.Snapshot, inputs []pluginInput, scopeOf func(tenant string) *Scope) string {
	h := sha256.New()
	for _, in := range inputs {
		body := []byte(`{"input":{}}`)
		if in.parameters != nil {
			body, _ = json.Marshal(map[string]any{"input": map[string]json.RawMessage{"parameters": in.parameters}})
		}
		_, q, err := parseArgoRequest(bytes.NewReader(body))
		var filter fleet.Filter
		if err == nil {
			filter, err = q.filter(scopeOf(in.tenant), snap)
		}
		var pairs *fleet.Answer
		if err == nil {
			pairs, err = snap.Answer(filter, fleet.ArgoCD)
		}
		if err == nil {
			digest := pairs.Digest()
			h.Write(digest[:])
			pairs.Release()
		} else {
			h.Write([]byte("error:" + err.Error()))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
