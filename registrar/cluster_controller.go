package registrar

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	labelselection "k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// ClusterReconciler registers one CAPI Cluster for every Registration that selects it, and removes what
// fleetbridge wrote for it when it goes away or stops matching. Reconcile requests are keyed by the
// Cluster's namespace/name, so a Cluster that no longer exists is still cleaned up.
type ClusterReconciler struct {
	Client    client.Client // cached: Clusters, Registrations, Namespaces, owned Secrets
	APIReader client.Reader // uncached, for the rare checks the cache cannot answer
	Recorder  events.EventRecorder
	Now       func() time.Time
	Resync    time.Duration
	// Namespaces are where the controller may write Secrets (its RBAC); a desired Secret elsewhere fails
	// the cluster with NamespaceNotAllowed instead of a Forbidden from the API server.
	Namespaces Namespaces

	// AllowedExecCommands is the platform team's ceiling for spec.credentials.allowedExecCommands.
	AllowedExecCommands []string
	// DeniedCIDRs are the workload server addresses refused (nil: link-local).
	DeniedCIDRs []netip.Prefix
	// ReconcileTimeout bounds one reconcile of one Cluster, so a few slow servers cannot hold every worker.
	ReconcileTimeout time.Duration

	conns   *connections
	results *results
	writer  *secretWriter
	tokens  *tokenSource
	// renewals enqueues the Clusters whose tokens are due, a window at a time.
	renewals *renewalScheduler
	// unownedArgo caches the identity (labels, server, name) of Argo CD cluster Secrets fleetbridge does
	// not own, for checkArgoDuplicates.
	unownedArgo client.Reader
	// registrationEvents wakes the Registration controller when a result it summarises changed.
	registrationEvents chan event.GenericEvent
	// gate orders registers against a Registration's deletion and remembers what each workload cluster
	// was checked to hold (shared with the Registration controller).
	gate *workloadGate
	// profiles receives each Cluster's ClusterProfile facts (nil: profiles are not published).
	profiles *profiles
	// reconciled is Options.reconciled, a test seam.
	reconciled func(cluster types.NamespacedName, started time.Time)
}

// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings every output of one Cluster in line with the Registrations selecting it.
func (r *ClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	start := time.Now()
	key := req.NamespacedName
	defer func() {
		reconcileDuration.WithLabelValues("cluster").Observe(time.Since(start).Seconds())
		if r.reconciled != nil {
			r.reconciled(key, start)
		}
	}()
	if r.ReconcileTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.ReconcileTimeout)
		defer cancel()
	}

	cluster := &clusterv1.Cluster{}
	if err := r.Client.Get(ctx, key, cluster); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		cluster = nil
	}
	secrets := &corev1.SecretList{}
	if err := r.Client.List(ctx, secrets, client.MatchingFields{indexCluster: key.String()}); err != nil {
		return ctrl.Result{}, err
	}
	if cluster == nil || !cluster.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.deregisterCluster(ctx, key, cluster, secrets.Items)
	}
	if paused(cluster) {
		log.FromContext(ctx).V(1).Info("Cluster is paused; leaving its secrets as they are")
		return ctrl.Result{}, nil
	}

	regs := &fleetv1.RegistrationList{}
	if err := r.Client.List(ctx, regs); err != nil {
		return ctrl.Result{}, err
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: key.Namespace}, ns); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	sel := selectFor(cluster, ns.Labels, regs.Items)

	// What a Registration that no longer registers this cluster wrote goes away first, so a conflict
	// winner never sees the loser's secret.
	keep := map[string]bool{}
	for _, reg := range sel.active {
		keep[reg.Name] = true
	}
	for name := range sel.frozen {
		keep[name] = true
	}
	var errs []error
	for _, name := range writtenBy(secrets.Items, r.results.registrationsOf(key)) {
		if keep[name] {
			continue
		}
		_, stillSelected := sel.conflicts[name]
		if err := r.deregister(ctx, cluster, key, name, secrets.Items, !stillSelected, !stillSelected); err != nil {
			errs = append(errs, err)
		}
	}
	for name, c := range sel.conflicts {
		r.record(ctx, cluster, registrationNamed(regs.Items, name), clusterResult{Reason: fleetv1.ReasonConflict, Message: c.message, Failing: true, ConflictWith: c.winner})
	}

	requeue := r.Resync
	var renewal time.Time
	outcomes := make(map[string]clusterResult, len(sel.active))
	for _, reg := range sel.active {
		// Registering, and recording the result, happen inside the gate, so a deletion that began after
		// the Registrations were read waits for them and then finds this Cluster among its results.
		var res clusterResult
		if !r.gate.run(ctx, reg, key, func() {
			res = r.register(ctx, reg, cluster, secrets.Items)
			res = r.record(ctx, cluster, reg, res)
		}) {
			continue // the Registration's deletion began; its cleanup covers this Cluster
		}
		outcomes[reg.Name] = res
		if res.Failing {
			requeue = min(requeue, backoff(res.attempts))
		}
		if !res.renewAt.IsZero() && (renewal.IsZero() || res.renewAt.Before(renewal)) {
			renewal = res.renewAt
		}
	}
	if r.profiles != nil {
		last, _ := r.profiles.get(key)
		r.profiles.set(key, profileFactsFor(cluster, sel.active, outcomes, secrets.Items, last))
	}
	// Renewals wait for their window in the scheduler, which starts a window's Clusters together.
	r.renewals.schedule(key, renewal)
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(errs...)
}

// markUnreachable sets fleetbridge.io/reachable=false on the Secrets a Registration wrote for a Cluster,
// once per outage (a Secret already marked is not written again).
func (r *ClusterReconciler) markUnreachable(ctx context.Context, registration string, written []corev1.Secret) error {
	var errs []error
	for i := range written {
		s := &written[i]
		if s.Labels[owned.LabelRegistration] != registration || s.Annotations[owned.AnnotationReachable] == "false" {
			continue
		}
		patch := []byte(`{"metadata":{"annotations":{"` + owned.AnnotationReachable + `":"false"}}}`)
		if err := r.Client.Patch(ctx, s, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(owned.FieldManager)); err != nil {
			errs = append(errs, client.IgnoreNotFound(err))
			continue
		}
		countWrite(s.Labels[owned.LabelOutput], "patch", causeUnreachable)
	}
	return errors.Join(errs...)
}

// fluxNamespaces are the existing namespaces a Registration's flux block targets, sorted.
func (r *ClusterReconciler) fluxNamespaces(ctx context.Context, reg *fleetv1.Registration) ([]string, error) {
	set := map[string]bool{}
	list := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, list); err != nil {
		return nil, err
	}
	existing := map[string]bool{}
	for _, ns := range list.Items {
		if ns.DeletionTimestamp.IsZero() {
			existing[ns.Name] = true
		}
	}
	for _, name := range reg.Spec.Flux.Namespaces {
		if existing[name] {
			set[name] = true
		}
	}
	if reg.Spec.Flux.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(reg.Spec.Flux.NamespaceSelector)
		if err != nil {
			return nil, failure(fleetv1.ReasonInvalidSpec, "spec.flux.namespaceSelector: %s", err)
		}
		for _, ns := range list.Items {
			if existing[ns.Name] && sel.Matches(labels.Set(ns.Labels)) {
				set[ns.Name] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

// unownedArgoClusters selects the Argo CD cluster Secrets that do not carry fleetbridge's registration label.
var unownedArgoClusters = func() labels.Selector {
	isCluster, err1 := labels.NewRequirement(argocd.SecretTypeLabel, labelselection.Equals, []string{argocd.SecretTypeCluster})
	notOwned, err2 := labels.NewRequirement(owned.LabelRegistration, labelselection.DoesNotExist, nil)
	if err := errors.Join(err1, err2); err != nil {
		panic(err)
	}
	return labels.NewSelector().Add(*isCluster, *notOwned)
}()

// record stores a result, and on a change emits an Event on the Cluster (and wakes the Registration).
func (r *ClusterReconciler) record(ctx context.Context, cluster *clusterv1.Cluster, reg *fleetv1.Registration, res clusterResult) clusterResult {
	if reg == nil {
		return res
	}
	key := types.NamespacedName{Namespace: cluster.Namespace, Name: cluster.Name}
	prev, changed := r.results.set(reg.Name, key, res)
	stored, _ := r.results.get(reg.Name, key)
	if !changed {
		return stored
	}
	if !prev.sameReport(res) {
		eventType := corev1.EventTypeNormal
		if res.Failing {
			eventType = corev1.EventTypeWarning
			log.FromContext(ctx).Info("cluster not registered", "registration", reg.Name, "reason", res.Reason, "message", res.Message)
		} else if res.Registered {
			log.FromContext(ctx).V(1).Info("cluster registered", "registration", reg.Name)
		}
		if notable(prev, res) {
			r.Recorder.Eventf(cluster, reg, eventType, res.Reason, "Register", "Registration %s: %s", reg.Name, res.Message)
		}
	}
	r.wake(reg.Name)
	// The winner of a conflict shows whom it outranks.
	for _, winner := range []string{prev.ConflictWith, res.ConflictWith} {
		if winner != "" {
			r.wake(winner)
		}
	}
	return stored
}

// notable says a change of result is one a user acts on, which gets an Event on the Cluster: a failure,
// the recovery from one, and a registration with a caveat (TLS verification off, an exec plugin the
// controller cannot check). A plain registration, or waiting for a control plane, shows in the
// Registration's status and metrics only: one Event per Cluster at every start of the controller (its
// results live in memory) was a third of a cold start's calls to the API server.
func notable(prev, res clusterResult) bool {
	return res.Failing || prev.Failing || res.Insecure || res.Unverified
}

// wake asks the Registration controller to summarise a Registration again.
func (r *ClusterReconciler) wake(registration string) {
	reg := &fleetv1.Registration{}
	reg.Name = registration
	r.registrationEvents <- event.GenericEvent{Object: reg}
}

// deregisterCluster removes everything written for a Cluster that is gone or being deleted. It never
// holds up Cluster API's own deletion (no finalizer on Clusters).
func (r *ClusterReconciler) deregisterCluster(ctx context.Context, key types.NamespacedName, cluster *clusterv1.Cluster, written []corev1.Secret) error {
	var errs []error
	for _, name := range writtenBy(written, r.results.registrationsOf(key)) {
		if err := r.deregister(ctx, cluster, key, name, written, cluster != nil, true); err != nil {
			errs = append(errs, err)
		}
	}
	if cluster == nil {
		r.conns.forget(key)
	}
	if r.profiles != nil && len(errs) == 0 {
		r.profiles.set(key, nil)
	}
	r.renewals.schedule(key, time.Time{})
	return errors.Join(errs...)
}

// deregister deletes the Secrets one Registration wrote for one Cluster and, when asked, its ServiceAccount
// and bindings on the workload cluster (best effort: the cluster may be gone) and its recorded result
// (a conflict loser keeps its Conflict result).
func (r *ClusterReconciler) deregister(ctx context.Context, cluster *clusterv1.Cluster, key types.NamespacedName, registration string,
	written []corev1.Secret, removeAccess, forgetResult bool) error {
	// Revoke first (deleting the ServiceAccount invalidates every token), then remove the Secrets.
	if removeAccess {
		if conn, err := r.conns.get(ctx, key); err == nil {
			if conn.kube != nil {
				if err := removeWorkloadAccess(ctx, conn.kube, registration); err != nil {
					log.FromContext(ctx).Info("could not remove the workload ServiceAccount; its tokens expire on their own", "registration", registration, "error", shortError(err))
				}
			}
			conn.close()
		}
	}
	var errs []error
	deleted := 0
	for i := range written {
		if written[i].Labels[owned.LabelRegistration] != registration {
			continue
		}
		if err := r.writer.delete(ctx, &written[i]); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted++
	}
	tokenExpirySeconds.DeleteLabelValues(registration, key.Namespace, key.Name)
	r.tokens.forget(registration, key)
	r.gate.forget(registration, key)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	forgotten := forgetResult && r.results.remove(registration, key)
	if forgotten || deleted > 0 {
		if cluster != nil {
			reg := &fleetv1.Registration{}
			if err := r.Client.Get(ctx, types.NamespacedName{Name: registration}, reg); err == nil {
				r.Recorder.Eventf(cluster, reg, corev1.EventTypeNormal, fleetv1.ReasonDeregistered, "Deregister",
					"Registration %s: removed %d secrets", registration, deleted)
			}
		}
		r.wake(registration)
	}
	return nil
}

// writtenBy lists, sorted, the Registrations that wrote one of the Secrets or hold a result.
func writtenBy(secrets []corev1.Secret, withResults []string) []string {
	set := map[string]bool{}
	for _, s := range secrets {
		if name := s.Labels[owned.LabelRegistration]; name != "" {
			set[name] = true
		}
	}
	for _, name := range withResults {
		set[name] = true
	}
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func registrationNamed(regs []fleetv1.Registration, name string) *fleetv1.Registration {
	for i := range regs {
		if regs[i].Name == name {
			return &regs[i]
		}
	}
	return nil
}

// versionLabelOf keeps the last known Kubernetes version when a probe could not learn it.
func versionLabelOf(registration string, written []corev1.Secret) string {
	for _, s := range written {
		if s.Labels[owned.LabelRegistration] == registration {
			if rec, ok := owned.RecordOf(s.Labels, s.Annotations); ok && rec.KubernetesVersion != "" {
				return rec.KubernetesVersion
			}
		}
	}
	return ""
}
