package plugin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cluster-api/util/patch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// +kubebuilder:rbac:groups=fleetbridge.io,resources=workloads,verbs=get;list;watch
// +kubebuilder:rbac:groups=fleetbridge.io,resources=workloads/status,verbs=get;update;patch

// WorkloadReconciler keeps Workload.status (matched clusters, Ready, InputsTrimmed) in line with the
// fleet and with what the Flux refresher found.
type WorkloadReconciler struct {
	Client  client.Client
	Fleet   *fleet.Store
	Trimmed *trimmedInputs
	// Generated and Owners find what each pair became (status.fleet); nil leaves status.fleet out.
	Generated *generatedObjects
	Owners    *workloadOfPair
	// MissingGrace is how long a pair may have nothing generated for it before it counts as Missing.
	MissingGrace time.Duration
	Now          func() time.Time
}

// Reconcile patches the status only when it changed.
func (r *WorkloadReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	w := &fleetv1.Workload{}
	if err := r.Client.Get(ctx, req.NamespacedName, w); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !r.Fleet.Synced() {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	helper, err := patch.NewHelper(w, r.Client)
	if err != nil {
		return ctrl.Result{}, err
	}
	defer func() {
		if err := helper.Patch(ctx, w); err != nil {
			reterr = errors.Join(reterr, err)
		}
	}()
	trims, known := r.Trimmed.get(req.NamespacedName)
	snap := r.Fleet.Snapshot()
	w.Status = workloadStatus(w, snap, trims, known)
	var requeue time.Duration
	w.Status.Fleet, w.Status.Summary, requeue = r.fleetStatus(w, snap)
	if w.Status.Fleet == nil {
		if c := meta.FindStatusCondition(w.Status.Conditions, fleetv1.ReadyCondition); c != nil {
			w.Status.Summary = c.Message
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// fleetStatus is what the Workload's pairs became (nil when nothing was generated for any), its summary,
// and when to look again for a pair whose grace period ends.
func (r *WorkloadReconciler) fleetStatus(w *fleetv1.Workload, snap *fleet.Snapshot) (*fleetv1.WorkloadFleet, string, time.Duration) {
	if r.Generated == nil {
		return nil, "", 0
	}
	// The pairs as the snapshot has them, which is what the plugin answers Argo CD and Flux with.
	key := types.NamespacedName{Namespace: w.Namespace, Name: w.Name}
	if snap.Invalid[key] != nil {
		return nil, "", 0
	}
	refs := snap.PairRefs(fleet.Filter{Workloads: []types.NamespacedName{key}})
	names := make([]string, len(refs))
	states := make([]*generated, len(refs))
	missing := map[string]bool{}
	for i, ref := range refs {
		names[i] = ref.Name
		if st, ok := r.Generated.lookup(ref); ok {
			states[i] = &st
		} else {
			missing[ref.Name] = true
		}
	}
	now := r.Now()
	since := r.Owners.set(types.NamespacedName{Namespace: w.Namespace, Name: w.Name}, names, missing, now)
	pairs := make([]pairHealth, len(refs))
	var requeue time.Duration
	for i, ref := range refs {
		pairs[i] = pairHealth{cluster: ref.Cluster.String(), object: states[i], since: since[ref.Name]}
		if states[i] == nil {
			if left := r.MissingGrace - now.Sub(since[ref.Name]); left > 0 && (requeue == 0 || left < requeue) {
				requeue = left
			}
		}
	}
	out, summary := fleetHealth(pairs, now, r.MissingGrace)
	return out, summary, requeue
}

// workloadStatus counts the ready clusters a Workload pairs with now and sets Ready; it sets
// InputsTrimmed from the Flux providers that drop some of its pairs, or removes it when there are none
// (trimsKnown false keeps whatever the status has).
func workloadStatus(w *fleetv1.Workload, snap *fleet.Snapshot, trims []inputTrim, trimsKnown bool) fleetv1.WorkloadStatus {
	out := fleetv1.WorkloadStatus{ObservedGeneration: w.Generation, Conditions: append([]metav1.Condition(nil), w.Status.Conditions...)}
	cond := metav1.Condition{Type: fleetv1.ReadyCondition, ObservedGeneration: w.Generation}
	key := types.NamespacedName{Namespace: w.Namespace, Name: w.Name}
	converted, err := fleet.WorkloadFrom(w)
	if invalid := snap.Invalid[key]; invalid != nil {
		err = invalid
	}
	switch {
	case err != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, fleetv1.ReasonInvalidSpec, err.Error()
		for i := range snap.Workloads {
			if snap.Workloads[i].Namespace == w.Namespace && snap.Workloads[i].Name == w.Name {
				cond.Message += "; plugin answers keep its last valid version"
			}
		}
	default:
		only := &fleet.Snapshot{Clusters: snap.Clusters, Workloads: []fleet.Workload{converted}}
		matched := only.CountPairs(fleet.Filter{})
		out.MatchedClusters = int32(matched)
		if matched == 0 {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, fleetv1.ReasonNoClustersSelected, "no registered cluster matches"
		} else {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, fleetv1.ReasonMatched, fmt.Sprintf("paired with %d clusters", matched)
		}
	}
	meta.SetStatusCondition(&out.Conditions, cond)
	switch {
	case !trimsKnown:
	case len(trims) == 0:
		meta.RemoveStatusCondition(&out.Conditions, fleetv1.InputsTrimmedCondition)
	default:
		meta.SetStatusCondition(&out.Conditions, inputsTrimmed(w, trims))
	}
	return out
}

// maxTrimsNamed bounds an InputsTrimmed message; further providers are counted.
const maxTrimsNamed = 3

// inputsTrimmed says which Flux providers drop the Workload's pairs. A provider in the Workload's own
// namespace is named; one elsewhere is only counted, since the Workload's readers may not read it.
func inputsTrimmed(w *fleetv1.Workload, trims []inputTrim) metav1.Condition {
	own := func(t inputTrim) bool { return t.Provider.Namespace == w.Namespace }
	sorted := append([]inputTrim(nil), trims...)
	sort.SliceStable(sorted, func(i, j int) bool { return own(sorted[i]) && !own(sorted[j]) })
	var parts []string
	for i, t := range sorted {
		if i == maxTrimsNamed {
			parts = append(parts, fmt.Sprintf("and %d more", len(sorted)-maxTrimsNamed))
			break
		}
		who := "a Flux ResourceSetInputProvider in another namespace"
		if own(t) {
			who = "Flux ResourceSetInputProvider " + t.Provider.Name + " in this namespace"
		}
		parts = append(parts, fmt.Sprintf("%s keeps %d of %d inputs (spec.filter.limit) and drops %d of this Workload's pairs", who, t.Kept, t.Total, t.Dropped))
	}
	return metav1.Condition{
		Type: fleetv1.InputsTrimmedCondition, Status: metav1.ConditionTrue, ObservedGeneration: w.Generation,
		Reason: fleetv1.ReasonInputLimitExceeded, Message: strings.Join(parts, "; "),
	}
}
