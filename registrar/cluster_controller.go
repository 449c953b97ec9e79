package registrar

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
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
	"github.com/fleetbridge/fleetbridge/internal/flux"
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

	conns   *connections
	results *results
	// unownedArgo caches the identity (labels, server, name) of Argo CD cluster Secrets fleetbridge does
	// not own, for checkArgoDuplicates.
	unownedArgo client.Reader
	// minted remembers the last token written per Registration and Cluster, so a reconcile that reads a
	// cache not yet showing that write does not mint (and write) again.
	minted sync.Map // tokenKey -> currentToken
	// applied remembers, per Secret, what fleetbridge last wrote and the resourceVersion it replaced, so a
	// reconcile reading a cache that lags behind its own write does not write the same content again.
	applied sync.Map // types.NamespacedName -> appliedWrite
	// writing holds, while a write is in flight, the hash of what it applies.
	writing sync.Map // types.NamespacedName -> string
	// locks serialises reconciles of one Cluster (controller-runtime does; direct callers may not).
	locks keyedMutex
	// registrationEvents wakes the Registration controller when a result it summarises changed.
	registrationEvents chan event.GenericEvent
	// gate orders registers against a Registration's deletion and remembers what each workload cluster
	// was checked to hold (shared with the Registration controller).
	gate *workloadGate
}

// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings every output of one Cluster in line with the Registrations selecting it.
func (r *ClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	start := time.Now()
	defer func() { reconcileDuration.WithLabelValues("cluster").Observe(time.Since(start).Seconds()) }()
	key := req.NamespacedName
	unlock := r.locks.lock(key)
	defer unlock()

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
		if err := r.deregister(ctx, cluster, key, name, secrets.Items, !stillSelected && registrationExists(regs.Items, name), !stillSelected); err != nil {
			errs = append(errs, err)
		}
	}
	for name, msg := range sel.conflicts {
		r.record(ctx, cluster, registrationNamed(regs.Items, name), clusterResult{Reason: fleetv1.ReasonConflict, Message: msg, Failing: true})
	}

	requeue := r.Resync
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
		next := r.Resync
		switch {
		case res.Failing:
			next = backoff(res.attempts)
		case !res.TokenExpiresAt.IsZero():
			next = max(time.Second, res.renewAt.Sub(r.Now()))
		}
		requeue = min(requeue, next)
	}
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(errs...)
}

// register writes every output of one Registration for one Cluster and reports the outcome.
func (r *ClusterReconciler) register(ctx context.Context, reg *fleetv1.Registration, cluster *clusterv1.Cluster, written []corev1.Secret) clusterResult {
	key := types.NamespacedName{Namespace: cluster.Namespace, Name: cluster.Name}
	if !controlPlaneInitialized(cluster) {
		return clusterResult{Reason: fleetv1.ReasonWaitingForControlPlane, Message: "the control plane is not initialized yet"}
	}
	conn, err := r.conns.get(ctx, key)
	if err != nil {
		return failed(err, fleetv1.ReasonKubeconfigInvalid)
	}
	defer conn.close()
	mode := credentialsMode(reg)
	if mode == fleetv1.CredentialsServiceAccountToken && conn.kube == nil {
		return clusterResult{Failing: true, Reason: fleetv1.ReasonKubeconfigInvalid,
			Message: "the CAPI kubeconfig has only an exec plugin, which the controller does not run; ServiceAccountToken mode needs embedded credentials (or use mode Kubeconfig)"}
	}
	facts, err := conn.probe(ctx)
	if err != nil {
		// Keep the Secrets (the cluster may be back in a minute) but mark them, so the plugin stops
		// pairing workloads with it until a probe succeeds again.
		if markErr := r.markUnreachable(ctx, reg.Name, written); markErr != nil {
			log.FromContext(ctx).Info("could not mark secrets unreachable", "error", shortError(markErr))
		}
		return failed(err, fleetv1.ReasonClusterUnreachable)
	}

	var config argocd.ClusterConfig
	var times *tokenTimes
	seed := renewalSeed(cluster.UID, reg.Name)
	switch mode {
	case fleetv1.CredentialsServiceAccountToken:
		access := workloadAccess{kube: conn.kube, reg: reg, cluster: key, gate: r.gate}
		uid, err := access.ensure(ctx)
		if err != nil {
			return failed(err, fleetv1.ReasonTokenRequestFailed)
		}
		cur := newerToken(currentTokenOf(reg.Name, written), r.lastMinted(reg.Name, key))
		if need, why := tokenDecision(cur, uid, tokenTTL(reg), r.Now(), seed); need {
			minted, err := access.mint(ctx, r.Now())
			if err != nil {
				return failed(err, fleetv1.ReasonTokenRequestFailed)
			}
			log.FromContext(ctx).Info("minted ServiceAccount token", "registration", reg.Name, "why", why, "expiresAt", minted.Times.ExpiresAt)
			tokensMinted.WithLabelValues(reg.Name).Inc()
			cur = &minted
			r.minted.Store(tokenKey{reg.Name, key}, minted)
		}
		config = argocd.BearerTokenConfig(conn.creds, cur.Token)
		times = &cur.Times
	case fleetv1.CredentialsKubeconfig:
		workloadAccess{kube: conn.kube, reg: reg, cluster: key, gate: r.gate}.ensureNone(ctx, written)
		config = argocd.KubeconfigConfig(conn.creds)
	}

	if facts.KubernetesVersion == "" {
		facts.KubernetesVersion = versionLabelOf(reg.Name, written)
	}
	var desired []*corev1.Secret
	if reg.Spec.ArgoCD != nil {
		s, err := desiredArgoSecret(reg, cluster, conn.creds.Server, config, times, facts)
		if err != nil {
			return clusterResult{Failing: true, Reason: fleetv1.ReasonInvalidSpec, Message: err.Error()}
		}
		desired = append(desired, s)
	}
	// A Flux output that cannot be rendered fails the cluster but does not hold back Argo CD's.
	var fluxErr error
	if reg.Spec.Flux != nil {
		fluxErr = func() error {
			namespaces, err := r.fluxNamespaces(ctx, reg)
			if err != nil {
				return err
			}
			token := ""
			if config.BearerToken != "" && mode == fleetv1.CredentialsServiceAccountToken {
				token = config.BearerToken
			}
			kc, err := flux.Kubeconfig(conn.creds, token)
			if err != nil {
				return failure(fleetv1.ReasonKubeconfigInvalid, "%s", err)
			}
			secrets, err := desiredFluxSecrets(reg, cluster, namespaces, kc, times, facts)
			if err != nil {
				return failure(fleetv1.ReasonInvalidSpec, "%s", err)
			}
			desired = append(desired, secrets...)
			return nil
		}()
	}
	for _, d := range desired {
		if !r.Namespaces.SecretsAllowed(d.Namespace) {
			return failed(failure(fleetv1.ReasonNamespaceNotAllowed,
				"fleetbridge may not write Secrets in namespace %s (allowed: %s); add it to --secret-namespaces (Helm value rbac.secretNamespaces)",
				d.Namespace, strings.Join(r.Namespaces.Secrets, ", ")), fleetv1.ReasonNamespaceNotAllowed)
		}
		var err error
		if d.Labels[owned.LabelOutput] == owned.OutputArgoCD {
			err = r.writeArgoSecret(ctx, reg, key, d)
		} else {
			err = r.writeOwnedSecret(ctx, reg, key, d)
		}
		if err != nil {
			return failed(err, fleetv1.ReasonWriteFailed)
		}
	}
	if fluxErr != nil {
		return failed(fluxErr, fleetv1.ReasonKubeconfigInvalid)
	}
	// Secrets this Registration wrote for the cluster that are no longer wanted (a Flux namespace dropped
	// from the list, an output removed from the spec) go away only once every wanted one is written.
	if err := r.removeUnwanted(ctx, reg.Name, written, desired); err != nil {
		return failed(err, fleetv1.ReasonWriteFailed)
	}
	res := clusterResult{Registered: true, Reason: fleetv1.ReasonRegistered, Message: "registered"}
	if times != nil {
		res.TokenExpiresAt = times.ExpiresAt
		res.renewAt = renewAt(*times, seed)
		tokenExpirySeconds.WithLabelValues(reg.Name, key.Namespace, key.Name).Set(time.Until(times.ExpiresAt).Seconds())
	}
	return res
}

func failed(err error, fallback string) clusterResult {
	return clusterResult{Failing: true, Reason: reasonOf(err, fallback), Message: shortError(err)}
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
		secretWrites.WithLabelValues(s.Labels[owned.LabelOutput], "mark-unreachable").Inc()
	}
	return errors.Join(errs...)
}

// ownedExisting returns the cached version of a Secret fleetbridge is about to write (nil when the cache
// has none), refusing a Secret fleetbridge owns for another Registration or Cluster. The cache holds only
// owned Secrets: a hand-made one of the same name is caught by the write itself (writeSecret creates
// with a precondition), not by a read before every create.
func (r *ClusterReconciler) ownedExisting(ctx context.Context, reg *fleetv1.Registration, cluster types.NamespacedName, desired *corev1.Secret) (*corev1.Secret, error) {
	existing := &corev1.Secret{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	if err := ownedFor(reg, cluster, existing); err != nil {
		return nil, err
	}
	return existing, nil
}

// ownedFor refuses a Secret that is not fleetbridge's for this Registration and Cluster.
func ownedFor(reg *fleetv1.Registration, cluster types.NamespacedName, s metav1.Object) error {
	l := s.GetLabels()
	if !owned.IsOwned(l) {
		return failure(fleetv1.ReasonConflict, "Secret %s/%s exists and is not managed by fleetbridge", s.GetNamespace(), s.GetName())
	}
	if l[owned.LabelRegistration] != reg.Name || l[owned.LabelClusterNamespace] != cluster.Namespace || l[owned.LabelClusterName] != cluster.Name {
		return failure(fleetv1.ReasonConflict, "Secret %s/%s is managed for Cluster %s/%s by Registration %s",
			s.GetNamespace(), s.GetName(), l[owned.LabelClusterNamespace], l[owned.LabelClusterName], l[owned.LabelRegistration])
	}
	return nil
}

// existingAfterConflict explains why creating a Secret the cache did not show failed: the live Secret's
// metadata says whether it is fleetbridge's (the cache had not caught up; it is then returned, to be
// written as an update) or someone else's (a Conflict).
func (r *ClusterReconciler) existingAfterConflict(ctx context.Context, reg *fleetv1.Registration, cluster types.NamespacedName, desired *corev1.Secret) (*metav1.PartialObjectMetadata, error) {
	live := newPartialSecret()
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(desired), live); err != nil {
		return nil, failure(fleetv1.ReasonWriteFailed, "Secret %s/%s changed while it was created: %s", desired.Namespace, desired.Name, apiReason(err))
	}
	if err := ownedFor(reg, cluster, live); err != nil {
		return nil, err
	}
	return live, nil
}

// writeOwnedSecret writes a desired Secret unless it is current, never touching one it does not own.
func (r *ClusterReconciler) writeOwnedSecret(ctx context.Context, reg *fleetv1.Registration, cluster types.NamespacedName, desired *corev1.Secret) error {
	existing, err := r.ownedExisting(ctx, reg, cluster, desired)
	if err != nil {
		return err
	}
	return r.writeSecret(ctx, reg, cluster, existing, desired, desired.Labels[owned.LabelOutput])
}

// removeUnwanted deletes the Secrets a Registration wrote for a Cluster that are not in desired.
func (r *ClusterReconciler) removeUnwanted(ctx context.Context, registration string, written []corev1.Secret, desired []*corev1.Secret) error {
	want := map[types.NamespacedName]bool{}
	for _, d := range desired {
		want[client.ObjectKeyFromObject(d)] = true
	}
	var errs []error
	for i := range written {
		s := &written[i]
		if s.Labels[owned.LabelRegistration] != registration || want[client.ObjectKeyFromObject(s)] {
			continue
		}
		errs = append(errs, r.deleteSecret(ctx, s))
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

// writeArgoSecret writes the desired Argo CD cluster Secret unless it is already current, refusing to
// touch a Secret fleetbridge does not own or to duplicate another cluster's server URL or name.
func (r *ClusterReconciler) writeArgoSecret(ctx context.Context, reg *fleetv1.Registration, cluster types.NamespacedName, desired *corev1.Secret) error {
	existing, err := r.ownedExisting(ctx, reg, cluster, desired)
	if err != nil {
		return err
	}
	if err := r.checkArgoDuplicates(ctx, cluster, desired, existing == nil); err != nil {
		if existing != nil && reasonOf(err, "") == fleetv1.ReasonConflict {
			if delErr := r.deleteSecret(ctx, existing); delErr != nil {
				return delErr
			}
		}
		return err
	}
	return r.writeSecret(ctx, reg, cluster, existing, desired, owned.OutputArgoCD)
}

// appliedWrite is what writeSecret last wrote to one Secret.
type appliedWrite struct {
	hash     string
	replaced string // resourceVersion the write replaced ("" when it created the Secret)
	written  string // resourceVersion the write produced
}

// isOwnWrite says whether a Secret is the version this controller's last write produced, or holds
// exactly what that write (or the one in flight) applied: its watch event needs no reconcile, since the
// reconcile that wrote it already made it current.
func (r *ClusterReconciler) isOwnWrite(obj client.Object) bool {
	key := client.ObjectKeyFromObject(obj)
	var last appliedWrite
	if v, ok := r.applied.Load(key); ok {
		last = v.(appliedWrite)
	}
	if last.written != "" && last.written == obj.GetResourceVersion() {
		return true
	}
	inFlight, _ := r.writing.Load(key)
	s, ok := obj.(*corev1.Secret)
	if !ok || (last.hash == "" && inFlight == nil) {
		return false
	}
	hash := secretHash(s)
	return last.hash == hash || inFlight == hash
}

// writeSecret applies desired unless the Secret already holds it, or the cache still shows exactly the
// version this controller's last identical write replaced. A Secret the cache does not show is created,
// never taken over.
func (r *ClusterReconciler) writeSecret(ctx context.Context, reg *fleetv1.Registration, cluster types.NamespacedName, existing, desired *corev1.Secret, output string) error {
	if secretUpToDate(existing, desired) {
		return nil
	}
	key := client.ObjectKeyFromObject(desired)
	hash := secretHash(desired)
	seenVersion := ""
	if existing != nil {
		seenVersion = existing.ResourceVersion
	}
	if v, ok := r.applied.Load(key); ok {
		if last := v.(appliedWrite); last.hash == hash && last.replaced == seenVersion {
			return nil
		}
	}
	operation := "update"
	if existing == nil {
		operation = "create"
	}
	// The watch event of this write may reach isOwnWrite before Apply returns.
	r.writing.Store(key, hash)
	defer r.writing.Delete(key)
	written, err := applySecret(ctx, r.Client, desired, existing == nil)
	if existing == nil && apierrors.IsConflict(err) {
		live, ownErr := r.existingAfterConflict(ctx, reg, cluster, desired)
		if ownErr != nil {
			return ownErr
		}
		seenVersion, operation = live.ResourceVersion, "update"
		written, err = applySecret(ctx, r.Client, desired, false)
	}
	if err != nil {
		return failure(fleetv1.ReasonWriteFailed, "write Secret %s/%s: %s", desired.Namespace, desired.Name, apiReason(err))
	}
	r.applied.Store(key, appliedWrite{hash: hash, replaced: seenVersion, written: written})
	secretWrites.WithLabelValues(output, operation).Inc()
	return nil
}

// checkArgoDuplicates enforces one Secret per server URL and per Argo CD name in a namespace. Between
// two owned Secrets the Cluster whose namespace/name sorts first keeps it; a Secret fleetbridge does not
// own always wins (checked only when creating). The Secrets fleetbridge does not own come from a cache
// of their identity only (see newUnownedArgoCache); a live List of every cluster Secret on each create
// made a cold start quadratic (the 1,000th create read 999 Secrets back) and cost a rate-limited call
// per Cluster.
func (r *ClusterReconciler) checkArgoDuplicates(ctx context.Context, cluster types.NamespacedName, desired *corev1.Secret, creating bool) error {
	for _, idx := range []struct{ field, key, what string }{
		{indexArgoServer, argocd.KeyServer, "server"},
		{indexArgoName, argocd.KeyName, "name"},
	} {
		value := string(desired.Data[idx.key])
		others := &corev1.SecretList{}
		if err := r.Client.List(ctx, others, client.InNamespace(desired.Namespace), client.MatchingFields{idx.field: value}); err != nil {
			return err
		}
		for _, o := range others.Items {
			if !owned.IsOwned(o.Labels) {
				// The owned-Secret cache selects on the registration label's presence, so it may hold a
				// Secret whose label is empty: not fleetbridge's, and such a Secret wins.
				if creating {
					return unownedArgoConflict(&o)
				}
				continue
			}
			other, ok := owned.ClusterOf(o.Labels)
			if !ok || other == cluster {
				continue
			}
			if other.String() < cluster.String() {
				return failure(fleetv1.ReasonConflict, "Cluster %s is already registered in Argo CD namespace %s with the same %s %q", other, desired.Namespace, idx.what, value)
			}
		}
	}
	if !creating {
		return nil
	}
	live := &corev1.SecretList{}
	if err := r.unownedArgo.List(ctx, live, client.InNamespace(desired.Namespace)); err != nil {
		return err
	}
	for _, o := range live.Items {
		if string(o.Data[argocd.KeyServer]) == string(desired.Data[argocd.KeyServer]) || string(o.Data[argocd.KeyName]) == string(desired.Data[argocd.KeyName]) {
			return unownedArgoConflict(&o)
		}
	}
	return nil
}

func unownedArgoConflict(s *corev1.Secret) error {
	return failure(fleetv1.ReasonConflict, "Argo CD cluster Secret %s/%s, not managed by fleetbridge, already registers this server or name", s.Namespace, s.Name)
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
		}
		r.Recorder.Eventf(cluster, reg, eventType, res.Reason, "Register", "Registration %s: %s", reg.Name, res.Message)
	}
	r.wake(reg.Name)
	return stored
}

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
		if err := r.deleteSecret(ctx, &written[i]); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted++
	}
	tokenExpirySeconds.DeleteLabelValues(registration, key.Namespace, key.Name)
	r.minted.Delete(tokenKey{registration, key})
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

func (r *ClusterReconciler) deleteSecret(ctx context.Context, s *corev1.Secret) error {
	if !owned.IsOwned(s.Labels) {
		return fmt.Errorf("refusing to delete Secret %s/%s: not managed by fleetbridge", s.Namespace, s.Name)
	}
	r.applied.Delete(client.ObjectKeyFromObject(s))
	err := r.Client.Delete(ctx, s, client.Preconditions{UID: &s.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	if err == nil {
		secretWrites.WithLabelValues(s.Labels[owned.LabelOutput], "delete").Inc()
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

func registrationExists(regs []fleetv1.Registration, name string) bool {
	return registrationNamed(regs, name) != nil
}

// currentTokenOf reads the newest token, and its timing, from the Secrets (Argo CD or Flux) a
// Registration wrote for a Cluster: one token serves every output.
func currentTokenOf(registration string, written []corev1.Secret) *currentToken {
	var newest *currentToken
	for _, s := range written {
		if s.Labels[owned.LabelRegistration] != registration {
			continue
		}
		times, ok := parseTokenTimes(s.Annotations, owned.AnnotationTokenIssuedAt, owned.AnnotationTokenExpiresAt)
		if !ok {
			continue
		}
		var token string
		switch s.Labels[owned.LabelOutput] {
		case owned.OutputArgoCD:
			if cfg, err := argocd.ParseConfig(s.Data[argocd.KeyConfig]); err == nil {
				token = cfg.BearerToken
			}
		case owned.OutputFlux:
			token = flux.Token(s.Data[flux.KubeconfigKey])
		}
		if token != "" {
			newest = newerToken(newest, &currentToken{Token: token, Times: times})
		}
	}
	return newest
}

type tokenKey struct {
	registration string
	cluster      types.NamespacedName
}

func (r *ClusterReconciler) lastMinted(registration string, cluster types.NamespacedName) *currentToken {
	if v, ok := r.minted.Load(tokenKey{registration, cluster}); ok {
		t := v.(currentToken)
		return &t
	}
	return nil
}

// newerToken picks the more recently issued of two tokens.
func newerToken(a, b *currentToken) *currentToken {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case b.Times.IssuedAt.After(a.Times.IssuedAt):
		return b
	}
	return a
}

// versionLabelOf keeps the last known Kubernetes version when a probe could not learn it.
func versionLabelOf(registration string, written []corev1.Secret) string {
	for _, s := range written {
		if s.Labels[owned.LabelRegistration] == registration {
			if v := s.Labels[owned.LabelKubernetesVersion]; v != "" {
				return v
			}
		}
	}
	return ""
}
