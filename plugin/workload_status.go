package plugin

import (
	"context"
	"errors"
	"fmt"
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

// WorkloadReconciler keeps Workload.status (matched clusters, Ready) in line with the fleet.
type WorkloadReconciler struct {
	Client client.Client
	Fleet  *fleet.Store
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
	w.Status = workloadStatus(w, r.Fleet.Snapshot())
	return ctrl.Result{}, nil
}

// workloadStatus counts the ready clusters a Workload pairs with now and sets Ready.
func workloadStatus(w *fleetv1.Workload, snap *fleet.Snapshot) fleetv1.WorkloadStatus {
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
	return out
}
