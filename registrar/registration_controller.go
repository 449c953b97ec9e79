package registrar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util/patch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// RegistrationReconciler owns a Registration's finalizer, its cleanup on deletion and its status. The
// per-cluster work happens in ClusterReconciler, whose results it summarises.
type RegistrationReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	// ReconcileTimeout bounds the cleanup on each workload cluster, as it bounds each Cluster's reconcile.
	ReconcileTimeout time.Duration

	conns   *connections
	results *results
	// gate is shared with the Cluster controller: a deletion closes it before removing workload access.
	gate *workloadGate
}

// +kubebuilder:rbac:groups=fleetbridge.io,resources=registrations,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=fleetbridge.io,resources=registrations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=fleetbridge.io,resources=registrations/finalizers,verbs=update

// Reconcile follows Cluster API's shape: get, finalizer, patch helper with a deferred status patch, phases.
func (r *RegistrationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	start := time.Now()
	defer func() { reconcileDuration.WithLabelValues("registration").Observe(time.Since(start).Seconds()) }()

	reg := &fleetv1.Registration{}
	if err := r.Client.Get(ctx, req.NamespacedName, reg); err != nil {
		if apierrors.IsNotFound(err) {
			r.results.forgetRegistration(req.Name)
			deleteRegistrationMetrics(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !reg.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, reg)
	}
	if !controllerutil.ContainsFinalizer(reg, owned.Finalizer) {
		base := reg.DeepCopy()
		controllerutil.AddFinalizer(reg, owned.Finalizer)
		return ctrl.Result{}, r.Client.Patch(ctx, reg, client.MergeFrom(base))
	}

	helper, err := patch.NewHelper(reg, r.Client)
	if err != nil {
		return ctrl.Result{}, err
	}
	prevReady := meta.FindStatusCondition(reg.Status.Conditions, fleetv1.ReadyCondition)
	var prevReason string
	if prevReady != nil {
		prevReason = prevReady.Reason
	}
	defer func() {
		if err := helper.Patch(ctx, reg); err != nil {
			reterr = errors.Join(reterr, err)
		}
	}()

	in, err := r.statusInput(ctx, reg)
	if err != nil {
		return ctrl.Result{}, err
	}
	status, complete := computeStatus(reg.Status, in)
	if !complete {
		// A selected Cluster has not reported yet (just after a start); its reconcile wakes this one.
		return ctrl.Result{}, nil
	}
	reg.Status = status
	publishRegistrationMetrics(reg.Name, status)
	if ready := meta.FindStatusCondition(status.Conditions, fleetv1.ReadyCondition); ready != nil && ready.Reason != prevReason {
		eventType := corev1.EventTypeNormal
		if ready.Status == "False" {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(reg, nil, eventType, ready.Reason, "Reconcile", "%s", ready.Message)
	}
	return ctrl.Result{}, nil
}

// statusInput gathers what the status is computed from: the selected Clusters and their results.
func (r *RegistrationReconciler) statusInput(ctx context.Context, reg *fleetv1.Registration) (statusInput, error) {
	in := statusInput{generation: reg.Generation, suspended: reg.Spec.Suspend, results: r.results.snapshot(reg.Name),
		outranks: r.results.outrankedBy(reg.Name)}
	if err := validateSpec(reg); err != nil {
		in.specError = err
		return in, nil
	}
	sel, _ := selectorsOf(reg) // validateSpec parsed them
	// The cache's objects are read, never modified: copying every Cluster on each status pass (one per
	// cluster result change) made a cold start of 1,000 Clusters spend most of its CPU here.
	clusters := &clusterv1.ClusterList{}
	if err := r.Client.List(ctx, clusters, client.UnsafeDisableDeepCopy); err != nil {
		return in, err
	}
	nsLabels := map[string]map[string]string{}
	for i := range clusters.Items {
		c := &clusters.Items[i]
		if !c.DeletionTimestamp.IsZero() || paused(c) {
			if _, ok := in.results[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}]; !ok {
				continue
			}
		}
		labels, ok := nsLabels[c.Namespace]
		if !ok {
			ns := &corev1.Namespace{}
			if err := r.Client.Get(ctx, types.NamespacedName{Name: c.Namespace}, ns); err != nil && !apierrors.IsNotFound(err) {
				return in, err
			}
			labels = ns.Labels
			nsLabels[c.Namespace] = labels
		}
		if sel.matches(c, labels) {
			in.selected = append(in.selected, types.NamespacedName{Namespace: c.Namespace, Name: c.Name})
		}
	}
	return in, nil
}

// validateSpec finds what the API server's schema cannot: selectors and templates that do not work.
func validateSpec(reg *fleetv1.Registration) error {
	if _, err := selectorsOf(reg); err != nil {
		return err
	}
	probe := &clusterv1.Cluster{}
	probe.Namespace, probe.Name = "namespace", "name"
	if reg.Spec.ArgoCD != nil {
		if _, err := renderTemplate("spec.argocd.nameTemplate", nameTemplate(reg), probe); err != nil {
			return err
		}
	}
	if reg.Spec.Flux != nil {
		if _, err := desiredFluxSecrets(reg, probe, nil, nil, "", nil, clusterFacts{}); err != nil {
			return err
		}
		if reg.Spec.Flux.NamespaceSelector != nil {
			if _, err := metav1.LabelSelectorAsSelector(reg.Spec.Flux.NamespaceSelector); err != nil {
				return fmt.Errorf("spec.flux.namespaceSelector: %w", err)
			}
		}
	}
	return nil
}

// reconcileDelete removes every Secret the Registration wrote and, best effort and in parallel, its
// ServiceAccounts on workload clusters, then releases the finalizer.
func (r *RegistrationReconciler) reconcileDelete(ctx context.Context, reg *fleetv1.Registration) error {
	// From here on no register of this Registration touches a workload cluster, and those in flight have
	// finished and recorded their results, so the clusters gathered below are all it can have written to.
	r.gate.close(reg)
	if !controllerutil.ContainsFinalizer(reg, owned.Finalizer) {
		return nil
	}
	secrets := &corev1.SecretList{}
	if err := r.Client.List(ctx, secrets, client.MatchingLabelsSelector{Selector: owned.ForRegistration(reg.Name)}); err != nil {
		return err
	}
	clusters := map[types.NamespacedName]bool{}
	for _, s := range secrets.Items {
		if key, ok := owned.ClusterOf(s.Labels); ok {
			clusters[key] = true
		}
	}
	for key := range r.results.snapshot(reg.Name) {
		clusters[key] = true
	}
	// In every mode: a Registration in Kubeconfig mode may have used ServiceAccountToken mode before.
	r.removeAccessEverywhere(ctx, reg.Name, clusters)
	var errs []error
	for i := range secrets.Items {
		s := &secrets.Items[i]
		if err := r.Client.Delete(ctx, s, client.Preconditions{UID: &s.UID}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		countWrite(s.Labels[owned.LabelOutput], "delete", causeRemove)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	r.results.forgetRegistration(reg.Name)
	deleteRegistrationMetrics(reg.Name)
	base := reg.DeepCopy()
	controllerutil.RemoveFinalizer(reg, owned.Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, reg, client.MergeFrom(base)))
}

func (r *RegistrationReconciler) removeAccessEverywhere(ctx context.Context, registration string, clusters map[types.NamespacedName]bool) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for key := range clusters {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx := ctx
			if r.ReconcileTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, r.ReconcileTimeout)
				defer cancel()
			}
			conn, err := r.conns.get(ctx, key)
			if err != nil {
				return
			}
			defer conn.close()
			if conn.kube == nil {
				return
			}
			if err := removeWorkloadAccess(ctx, conn.kube, registration); err != nil {
				log.FromContext(ctx).Info("could not remove the workload ServiceAccount; its tokens expire on their own",
					"cluster", key, "error", shortError(err))
			}
		}()
	}
	wg.Wait()
}

func publishRegistrationMetrics(name string, s fleetv1.RegistrationStatus) {
	registeredClusters.WithLabelValues(name).Set(float64(s.Registered))
	failingClusters.DeletePartialMatch(map[string]string{"registration": name})
	byReason := map[string]int{}
	for _, f := range s.Failures {
		byReason[f.Reason]++
	}
	for reason, n := range byReason {
		failingClusters.WithLabelValues(name, reason).Set(float64(n))
	}
}

func deleteRegistrationMetrics(name string) {
	registeredClusters.DeleteLabelValues(name)
	failingClusters.DeletePartialMatch(map[string]string{"registration": name})
	tokenExpirySeconds.DeletePartialMatch(map[string]string{"registration": name})
}
