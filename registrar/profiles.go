package registrar

import (
	"cmp"
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/clusterinventory"
	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// +kubebuilder:rbac:groups=multicluster.x-k8s.io,resources=clusterprofiles,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=multicluster.x-k8s.io,resources=clusterprofiles/status,verbs=update

// profileManager is the cluster manager fleetbridge publishes ClusterProfiles as (spec.clusterManager.name
// and the x-k8s.io/cluster-manager label), and the name of the credential provider each profile lists.
const profileManager = "fleetbridge"

// profileName is a Cluster's ClusterProfile name. "<namespace>.<name>" is injective: a namespace name
// has no dots.
func profileName(cluster types.NamespacedName) string { return cluster.Namespace + "." + cluster.Name }

// profileSelector selects the ClusterProfiles fleetbridge publishes; the cache holds only those.
func profileSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{clusterinventory.LabelClusterManager: profileManager})
}

// profileLabels mark a profile as fleetbridge's, for one Cluster.
func profileLabels(cluster types.NamespacedName) map[string]string {
	return map[string]string{
		clusterinventory.LabelClusterManager: profileManager,
		owned.LabelClusterNamespace:          cluster.Namespace,
		owned.LabelClusterName:               cluster.Name,
	}
}

// profileFacts are what a registered Cluster's ClusterProfile says, derived from the Cluster, the
// Registrations registering it and their last reconcile. Credentials are never among them: a profile
// lists where the API server is and which CA signs it, and a consumer brings its own credential.
type profileFacts struct {
	displayName string
	version     string
	// health is the ControlPlaneHealthy condition's status, reason and message.
	health         metav1.ConditionStatus
	reason, detail string
	endpoint       clusterinventory.Cluster
	// properties are the Cluster labels the Registrations propagate.
	properties map[string]string
}

// clusterSeen is what one reconcile learnt of the workload cluster for one Registration, for its
// ClusterProfile: the probe's outcome, and the endpoint and version only when a probe confirmed them
// (clusterScope.seen).
type clusterSeen struct {
	creds   *kubeconfig.Credentials
	version string
	probe   probeOutcome
}

// profileFactsFor derives a Cluster's profile from the Registrations that register it (their results
// of this reconcile, by name) and the Secrets they had written before it. It is nil when no
// Registration registers the Cluster: then it has no profile. A Registration registers the Cluster once
// a reconcile wrote its outputs, and keeps it while they exist (an unreachable cluster keeps its
// outputs, and its profile, with ControlPlaneHealthy False). last is the Cluster's previous facts: what
// this reconcile could not confirm (a version, while the cluster does not answer) is kept from them, and
// what no reconcile since the start confirmed stays empty (desiredProfile then leaves the profile's
// field as it is).
func profileFactsFor(cluster *clusterv1.Cluster, active []*fleetv1.Registration, results map[string]clusterResult, written []corev1.Secret, last *profileFacts) *profileFacts {
	regs := slices.Clone(active)
	slices.SortFunc(regs, func(a, b *fleetv1.Registration) int { return strings.Compare(a.Name, b.Name) })
	var f *profileFacts
	probe := probeUnknown
	for _, reg := range regs {
		res := results[reg.Name]
		if !res.Registered && len(ownedBy(reg.Name, written)) == 0 {
			continue
		}
		if f == nil {
			f = &profileFacts{displayName: cluster.Name, properties: map[string]string{}}
		}
		// The first Registration by name decides a label both propagate.
		for k, v := range propagatedLabels(reg.Spec.Labels.Propagate, cluster.Labels) {
			if _, taken := f.properties[k]; !taken && len(k) <= 253 && v != "" {
				f.properties[k] = v
			}
		}
		if s := res.seen; s != nil {
			probe = max(probe, s.probe)
			if f.version == "" {
				f.version = s.version
			}
			if f.endpoint.Server == "" && s.creds != nil {
				f.endpoint = endpointOf(s.creds)
			}
		}
	}
	if f == nil {
		return nil
	}
	if last != nil {
		if f.version == "" {
			f.version = last.version
		}
		if f.endpoint.Server == "" {
			f.endpoint = last.endpoint
		}
		if probe == probeUnknown {
			// Nothing was learnt of the cluster itself (its kubeconfig could not be read): the last
			// finding stands.
			f.health, f.reason, f.detail = last.health, last.reason, last.detail
			return f
		}
	}
	f.health, f.reason, f.detail = controlPlaneHealth(cluster, probe)
	return f
}

// probeOutcome is what the probes of one reconcile found of a workload API server.
type probeOutcome int

const (
	probeUnknown  probeOutcome = iota // no probe ran (the kubeconfig could not be read or is not allowed)
	probeFailed                       // the API server did not answer
	probeAnswered                     // it answered (the best outcome of a reconcile's probes wins)
)

// endpointOf is the kubeconfig cluster entry of a CAPI kubeconfig: server and CA, never a user credential.
func endpointOf(c *kubeconfig.Credentials) clusterinventory.Cluster {
	return clusterinventory.Cluster{Server: strings.TrimSuffix(c.Server, "/"), TLSServerName: c.ServerName, InsecureSkipTLSVerify: c.Insecure,
		CertificateAuthorityData: c.CAData, ProxyURL: c.ProxyURL, DisableCompression: c.DisableCompression}
}

// controlPlaneHealth is the ControlPlaneHealthy condition: Cluster API's ControlPlaneAvailable
// condition, False whatever it says when the API server does not answer fleetbridge's probe, and
// Unknown when no probe could run.
func controlPlaneHealth(cluster *clusterv1.Cluster, probe probeOutcome) (metav1.ConditionStatus, string, string) {
	switch probe {
	case probeFailed:
		return metav1.ConditionFalse, fleetv1.ReasonClusterUnreachable, "the API server does not answer fleetbridge's probe"
	case probeUnknown:
		return metav1.ConditionUnknown, fleetv1.ReasonControlPlaneAvailabilityUnknown, "fleetbridge has not probed the API server"
	}
	c := meta.FindStatusCondition(cluster.Status.Conditions, clusterv1.ClusterControlPlaneAvailableCondition)
	switch {
	case c == nil:
		return metav1.ConditionUnknown, fleetv1.ReasonControlPlaneAvailabilityUnknown, "the API server answers; Cluster API reports no ControlPlaneAvailable condition yet"
	case c.Status == metav1.ConditionTrue:
		return metav1.ConditionTrue, fleetv1.ReasonControlPlaneAvailable, "the API server answers, and Cluster API reports the control plane available"
	case c.Status == metav1.ConditionFalse:
		return metav1.ConditionFalse, fleetv1.ReasonControlPlaneNotAvailable, "the API server answers, but Cluster API reports the control plane not available: " + clip(c.Message)
	}
	return metav1.ConditionUnknown, fleetv1.ReasonControlPlaneAvailabilityUnknown, "the API server answers; Cluster API does not know whether the control plane is available"
}

// desiredProfile is the ClusterProfile a Cluster's facts make. existing (nil when there is none) keeps
// the times of what did not change: the condition's last transition and each property's last
// observation, so an unchanged cluster gives an unchanged profile and costs no write.
func desiredProfile(namespace string, cluster types.NamespacedName, f *profileFacts, existing *clusterinventory.ClusterProfile, now time.Time) *clusterinventory.ClusterProfile {
	p := &clusterinventory.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: profileName(cluster), Labels: profileLabels(cluster)},
		Spec:       clusterinventory.ClusterProfileSpec{DisplayName: f.displayName, ClusterManager: clusterinventory.ClusterManager{Name: profileManager}},
	}
	var prev clusterinventory.ClusterProfileStatus
	if existing != nil {
		prev = existing.Status
		p.Status.Conditions = slices.Clone(prev.Conditions)
	}
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{Type: clusterinventory.ConditionControlPlaneHealthy,
		Status: f.health, Reason: f.reason, Message: f.detail, LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))})
	// A version or an endpoint no probe since the start confirmed leaves the profile's as it is.
	p.Status.Version.Kubernetes = cmp.Or(f.version, prev.Version.Kubernetes)
	observed := map[string]clusterinventory.Property{}
	for _, prop := range prev.Properties {
		observed[prop.Name] = prop
	}
	for _, k := range slices.Sorted(maps.Keys(f.properties)) {
		prop := clusterinventory.Property{Name: k, Value: f.properties[k], LastObservedTime: metav1.NewTime(now.Truncate(time.Second))}
		if old, ok := observed[k]; ok && old.Value == prop.Value && !old.LastObservedTime.IsZero() {
			prop.LastObservedTime = old.LastObservedTime
		}
		p.Status.Properties = append(p.Status.Properties, prop)
	}
	if f.endpoint.Server != "" {
		p.Status.CredentialProviders = []clusterinventory.CredentialProvider{{Name: profileManager, Cluster: f.endpoint}}
	} else {
		p.Status.CredentialProviders = prev.CredentialProviders
	}
	return p
}

// profiles holds the facts of each Cluster's profile, as the Cluster controller last derived them, and
// wakes the profile controller when they change. A Cluster it does not know yet (after a start) is
// left alone until the Cluster controller has reconciled it.
type profiles struct {
	mu     sync.Mutex
	facts  map[types.NamespacedName]*profileFacts // nil: the Cluster has no profile
	events chan event.GenericEvent
}

func newProfiles() *profiles {
	return &profiles{facts: map[types.NamespacedName]*profileFacts{}, events: make(chan event.GenericEvent, 1024)}
}

// set records a Cluster's facts (nil: it has no profile) and wakes the profile controller if they changed.
func (p *profiles) set(key types.NamespacedName, f *profileFacts) {
	p.mu.Lock()
	old, known := p.facts[key]
	p.facts[key] = f
	p.mu.Unlock()
	if known && reflect.DeepEqual(old, f) {
		return
	}
	c := &clusterv1.Cluster{}
	c.Namespace, c.Name = key.Namespace, key.Name
	p.events <- event.GenericEvent{Object: c}
}

func (p *profiles) get(key types.NamespacedName) (f *profileFacts, known bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, known = p.facts[key]
	return f, known
}

// forget drops a Cluster whose profile is gone.
func (p *profiles) forget(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, known := p.facts[key]; known && f == nil {
		delete(p.facts, key)
	}
}

// ProfileReconciler publishes one ClusterProfile (SIG Multicluster's cluster inventory API) per
// registered Cluster in one namespace, from the facts the Cluster controller derives, and removes it on
// deregistration. Requests are keyed by the Cluster's namespace/name. A profile someone else changed
// or deleted is written back: it is a projection of state fleetbridge holds.
type ProfileReconciler struct {
	Client    client.Client // cached: fleetbridge's profiles, Clusters
	Namespace string
	Recorder  events.EventRecorder
	Now       func() time.Time

	profiles *profiles
}

// Reconcile brings one Cluster's profile in line with its facts: at most one create or update of the
// object and one of its status, and no write when it already matches.
func (r *ProfileReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := req.NamespacedName
	facts, known := r.profiles.get(key)
	cluster := &clusterv1.Cluster{}
	if err := r.Client.Get(ctx, key, cluster); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		cluster, facts, known = nil, nil, true
	}
	if !known {
		return ctrl.Result{}, nil // the Cluster controller has not reconciled this Cluster since the start
	}
	existing := &clusterinventory.ClusterProfile{}
	name := types.NamespacedName{Namespace: r.Namespace, Name: profileName(key)}
	if err := r.Client.Get(ctx, name, existing); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		existing = nil
	}
	if existing != nil && !ownsProfile(existing, key) {
		existing = nil // not fleetbridge's for this Cluster: a create finds it, and leaves it
	}
	if facts == nil {
		if existing != nil {
			if err := r.Client.Delete(ctx, existing, client.Preconditions{UID: &existing.UID}); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, r.failed(cluster, err)
			}
		}
		r.profiles.forget(key)
		return ctrl.Result{}, nil
	}
	desired := desiredProfile(r.Namespace, key, facts, existing, r.Now())
	if err := r.publish(ctx, existing, desired); err != nil {
		if apierrors.IsAlreadyExists(err) {
			if cluster != nil {
				r.Recorder.Eventf(cluster, nil, corev1.EventTypeWarning, fleetv1.ReasonProfileConflict, "PublishProfile",
					"ClusterProfile %s/%s exists and is not fleetbridge's; it is left as it is", name.Namespace, name.Name)
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, r.failed(cluster, err)
	}
	return ctrl.Result{}, nil
}

// publish writes what of desired existing lacks: the object (labels and display name; the cluster
// manager is immutable), then its status.
func (r *ProfileReconciler) publish(ctx context.Context, existing, desired *clusterinventory.ClusterProfile) error {
	obj := existing
	if obj == nil {
		obj = desired.DeepCopy()
		obj.Status = clusterinventory.ClusterProfileStatus{}
		if err := r.Client.Create(ctx, obj, client.FieldOwner(owned.FieldManager)); err != nil {
			return err
		}
	} else if !containsStrings(obj.Labels, desired.Labels) || obj.Spec.DisplayName != desired.Spec.DisplayName ||
		obj.Spec.ClusterManager != desired.Spec.ClusterManager {
		obj = obj.DeepCopy()
		if obj.Labels == nil {
			obj.Labels = map[string]string{}
		}
		maps.Copy(obj.Labels, desired.Labels)
		obj.Spec.DisplayName = desired.Spec.DisplayName
		// A profile whose immutable cluster manager someone changed cannot be updated: it is replaced.
		if obj.Spec.ClusterManager != desired.Spec.ClusterManager {
			if err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &obj.UID}); client.IgnoreNotFound(err) != nil {
				return err
			}
			return r.publish(ctx, nil, desired)
		}
		if err := r.Client.Update(ctx, obj, client.FieldOwner(owned.FieldManager)); err != nil {
			return err
		}
	}
	if equality.Semantic.DeepEqual(obj.Status, desired.Status) {
		return nil
	}
	obj = obj.DeepCopy()
	obj.Status = desired.Status
	return r.Client.Status().Update(ctx, obj, client.FieldOwner(owned.FieldManager))
}

// failed reports a profile that could not be written, as a Warning Event on its Cluster, and returns
// the error for a retry with backoff. The Cluster's registration is not affected.
func (r *ProfileReconciler) failed(cluster *clusterv1.Cluster, err error) error {
	if cluster != nil {
		r.Recorder.Eventf(cluster, nil, corev1.EventTypeWarning, fleetv1.ReasonProfilePublishFailed, "PublishProfile",
			"could not write the Cluster's ClusterProfile: %s", apiReason(err))
	}
	return err
}

// ownsProfile says a profile is fleetbridge's, for this Cluster.
func ownsProfile(p *clusterinventory.ClusterProfile, cluster types.NamespacedName) bool {
	l := p.Labels
	return l[clusterinventory.LabelClusterManager] == profileManager && l[owned.LabelClusterNamespace] == cluster.Namespace &&
		l[owned.LabelClusterName] == cluster.Name
}

// profileToCluster maps a profile's events to its Cluster.
func profileToCluster(_ context.Context, obj client.Object) []ctrl.Request {
	key, ok := owned.ClusterOf(obj.GetLabels())
	if !ok {
		return nil
	}
	return []ctrl.Request{{NamespacedName: key}}
}
