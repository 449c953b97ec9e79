package registrar

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/clusterinventory"
	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// profileFactsFor: which Clusters have a profile, what it says of their health, and what is kept from
// the last facts when a reconcile cannot learn it.
func TestProfileFactsFor(t *testing.T) {
	cluster := func(available metav1.ConditionStatus) *clusterv1.Cluster {
		c := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "edge-1",
			Labels: map[string]string{"region": "eu", "tier": "gold", "fleetbridge.io/registration": "forged", "empty": ""}}}
		if available != "" {
			c.Status.Conditions = []metav1.Condition{{Type: clusterv1.ClusterControlPlaneAvailableCondition, Status: available, Message: "2 of 3 replicas"}}
		}
		return c
	}
	reg := func(name string, propagate ...string) *fleetv1.Registration {
		return &fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: fleetv1.RegistrationSpec{Labels: fleetv1.LabelPolicy{Propagate: propagate}}}
	}
	creds := &kubeconfig.Credentials{Server: "https://edge-1.example.com:6443/", CAData: []byte("ca"), CertData: []byte("admin cert"), KeyData: []byte("admin key"), BearerToken: "admin token"}
	answered := &clusterSeen{creds: creds, version: "v1.36.3", probe: probeAnswered}
	// What clusterScope.seen gives: a failed probe confirms no endpoint and no version.
	failedProbe := &clusterSeen{probe: probeFailed}
	key := types.NamespacedName{Namespace: "fleet", Name: "edge-1"}
	written := func(registration, version string) corev1.Secret {
		rec := owned.Record{Registration: registration, Cluster: key, Output: owned.OutputArgoCD, KubernetesVersion: version, Reachable: true}
		return corev1.Secret{ObjectMeta: metav1.ObjectMeta{Labels: rec.Labels(), Annotations: rec.Annotations()}}
	}
	endpoint := clusterinventory.Cluster{Server: "https://edge-1.example.com:6443", CertificateAuthorityData: []byte("ca")}
	last := &profileFacts{displayName: "edge-1", version: "v1.35.0", health: metav1.ConditionTrue, reason: fleetv1.ReasonControlPlaneAvailable, detail: "x",
		endpoint: endpoint, properties: map[string]string{"region": "eu"}}

	for _, tc := range []struct {
		name    string
		cluster *clusterv1.Cluster
		active  []*fleetv1.Registration
		results map[string]clusterResult
		written []corev1.Secret
		last    *profileFacts
		// want nil: no profile.
		want *profileFacts
	}{
		{name: "not selected: no profile", cluster: cluster(metav1.ConditionTrue)},
		{name: "selected, not registered yet: no profile", cluster: cluster(metav1.ConditionTrue), active: []*fleetv1.Registration{reg("a")},
			results: map[string]clusterResult{"a": {Reason: fleetv1.ReasonWaitingForControlPlane}}},
		{name: "registered and available", cluster: cluster(metav1.ConditionTrue), active: []*fleetv1.Registration{reg("a", "region", "fleetbridge.io/*", "empty")},
			results: map[string]clusterResult{"a": {Registered: true, seen: answered}},
			want: &profileFacts{displayName: "edge-1", version: "v1.36.3", health: metav1.ConditionTrue, reason: fleetv1.ReasonControlPlaneAvailable,
				detail: "the API server answers, and Cluster API reports the control plane available", endpoint: endpoint, properties: map[string]string{"region": "eu"}}},
		{name: "two Registrations: the first by name decides a shared label, both add theirs", cluster: cluster(metav1.ConditionTrue),
			active:  []*fleetv1.Registration{reg("b", "tier"), reg("a", "region")},
			results: map[string]clusterResult{"a": {Registered: true, seen: answered}, "b": {Registered: true, seen: answered}},
			want: &profileFacts{displayName: "edge-1", version: "v1.36.3", health: metav1.ConditionTrue, reason: fleetv1.ReasonControlPlaneAvailable,
				detail: "the API server answers, and Cluster API reports the control plane available", endpoint: endpoint, properties: map[string]string{"region": "eu", "tier": "gold"}}},
		{name: "Cluster API says the control plane is not available", cluster: cluster(metav1.ConditionFalse), active: []*fleetv1.Registration{reg("a")},
			results: map[string]clusterResult{"a": {Registered: true, seen: answered}},
			want: &profileFacts{displayName: "edge-1", version: "v1.36.3", health: metav1.ConditionFalse, reason: fleetv1.ReasonControlPlaneNotAvailable,
				detail: "the API server answers, but Cluster API reports the control plane not available: 2 of 3 replicas", endpoint: endpoint, properties: map[string]string{}}},
		{name: "no ControlPlaneAvailable condition", cluster: cluster(""), active: []*fleetv1.Registration{reg("a")},
			results: map[string]clusterResult{"a": {Registered: true, seen: answered}},
			want: &profileFacts{displayName: "edge-1", version: "v1.36.3", health: metav1.ConditionUnknown, reason: fleetv1.ReasonControlPlaneAvailabilityUnknown,
				detail: "the API server answers; Cluster API reports no ControlPlaneAvailable condition yet", endpoint: endpoint, properties: map[string]string{}}},
		{name: "unreachable: kept, with the version and endpoint a probe last confirmed, unhealthy whatever Cluster API says", cluster: cluster(metav1.ConditionTrue),
			active:  []*fleetv1.Registration{reg("a")},
			results: map[string]clusterResult{"a": {Failing: true, Reason: fleetv1.ReasonClusterUnreachable, seen: failedProbe}},
			written: []corev1.Secret{written("a", "v1.36.9")},
			last:    &profileFacts{version: "v1.36.2", endpoint: endpoint, health: metav1.ConditionTrue, reason: fleetv1.ReasonControlPlaneAvailable},
			want: &profileFacts{displayName: "edge-1", version: "v1.36.2", health: metav1.ConditionFalse, reason: fleetv1.ReasonClusterUnreachable,
				detail: "the API server does not answer fleetbridge's probe", endpoint: endpoint, properties: map[string]string{}}},
		{name: "one Registration's probe answered: reachable", cluster: cluster(metav1.ConditionTrue), active: []*fleetv1.Registration{reg("a"), reg("b")},
			results: map[string]clusterResult{"a": {Failing: true, seen: failedProbe}, "b": {Registered: true, seen: answered}},
			written: []corev1.Secret{written("a", "")},
			want: &profileFacts{displayName: "edge-1", version: "v1.36.3", health: metav1.ConditionTrue, reason: fleetv1.ReasonControlPlaneAvailable,
				detail: "the API server answers, and Cluster API reports the control plane available", endpoint: endpoint, properties: map[string]string{}}},
		{name: "kubeconfig unreadable: the last facts stand", cluster: cluster(metav1.ConditionTrue), active: []*fleetv1.Registration{reg("a", "region")},
			results: map[string]clusterResult{"a": {Failing: true, Reason: fleetv1.ReasonKubeconfigInvalid}},
			written: []corev1.Secret{written("a", "")}, last: last,
			want: &profileFacts{displayName: "edge-1", version: "v1.35.0", health: metav1.ConditionTrue, reason: fleetv1.ReasonControlPlaneAvailable, detail: "x",
				endpoint: endpoint, properties: map[string]string{"region": "eu"}}},
		{name: "kubeconfig unreadable, nothing known: unknown", cluster: cluster(metav1.ConditionTrue), active: []*fleetv1.Registration{reg("a")},
			results: map[string]clusterResult{"a": {Failing: true, Reason: fleetv1.ReasonKubeconfigInvalid}},
			written: []corev1.Secret{written("a", "")},
			want: &profileFacts{displayName: "edge-1", health: metav1.ConditionUnknown, reason: fleetv1.ReasonControlPlaneAvailabilityUnknown,
				detail: "fleetbridge has not probed the API server", properties: map[string]string{}}},
		{name: "unreachable since the start: no version or endpoint, not even the version label someone can write on the output", cluster: cluster(metav1.ConditionTrue),
			active:  []*fleetv1.Registration{reg("a")},
			results: map[string]clusterResult{"a": {Failing: true, Reason: fleetv1.ReasonClusterUnreachable, seen: failedProbe}},
			written: []corev1.Secret{written("a", "v9.9.9-forged")},
			want: &profileFacts{displayName: "edge-1", health: metav1.ConditionFalse, reason: fleetv1.ReasonClusterUnreachable,
				detail: "the API server does not answer fleetbridge's probe", properties: map[string]string{}}},
		{name: "deselected Registration's Secrets do not count", cluster: cluster(metav1.ConditionTrue), written: []corev1.Secret{written("a", "v1.36.2")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := profileFactsFor(tc.cluster, tc.active, tc.results, tc.written, tc.last)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// desiredProfile: the object and status a Cluster's facts make, the times of what did not change
// kept, and no credential in it.
func TestDesiredProfile(t *testing.T) {
	key := types.NamespacedName{Namespace: "fleet", Name: "edge-1"}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	facts := &profileFacts{displayName: "edge-1", version: "v1.36.3", health: metav1.ConditionTrue, reason: fleetv1.ReasonControlPlaneAvailable, detail: "ok",
		endpoint: clusterinventory.Cluster{Server: "https://edge-1:6443", CertificateAuthorityData: []byte("ca")}, properties: map[string]string{"tier": "gold", "region": "eu"}}
	first := desiredProfile("inventory", key, facts, nil, t0)
	if first.Name != "fleet.edge-1" || first.Namespace != "inventory" || first.Spec.ClusterManager.Name != "fleetbridge" || first.Spec.DisplayName != "edge-1" {
		t.Fatalf("object %+v %+v", first.ObjectMeta, first.Spec)
	}
	if l := first.Labels; l[clusterinventory.LabelClusterManager] != "fleetbridge" || l[owned.LabelClusterNamespace] != "fleet" || l[owned.LabelClusterName] != "edge-1" {
		t.Fatalf("labels %v", l)
	}
	if !ownsProfile(first, key) || ownsProfile(first, types.NamespacedName{Namespace: "fleet", Name: "edge-2"}) {
		t.Fatal("ownsProfile")
	}
	st := first.Status
	if st.Version.Kubernetes != "v1.36.3" || len(st.Conditions) != 1 || st.Conditions[0].Type != "ControlPlaneHealthy" || st.Conditions[0].Status != metav1.ConditionTrue ||
		!st.Conditions[0].LastTransitionTime.Time.Equal(t0) {
		t.Fatalf("status %+v", st)
	}
	if len(st.Properties) != 2 || st.Properties[0].Name != "region" || st.Properties[1].Name != "tier" || !st.Properties[0].LastObservedTime.Time.Equal(t0) {
		t.Fatalf("properties %+v", st.Properties)
	}
	if len(st.CredentialProviders) != 1 || st.CredentialProviders[0].Name != "fleetbridge" || st.CredentialProviders[0].Cluster.Server != "https://edge-1:6443" {
		t.Fatalf("credential providers %+v", st.CredentialProviders)
	}

	// Nothing changed an hour later: the same profile, so no write.
	t1 := t0.Add(time.Hour)
	if again := desiredProfile("inventory", key, facts, first, t1); !reflect.DeepEqual(again.Status, first.Status) {
		t.Fatalf("unchanged facts changed the status:\n%+v\n%+v", again.Status, first.Status)
	}
	// A label and the health change: only their times move.
	changed := *facts
	changed.properties = map[string]string{"tier": "gold", "region": "us"}
	changed.health, changed.reason, changed.detail = metav1.ConditionFalse, fleetv1.ReasonClusterUnreachable, "down"
	next := desiredProfile("inventory", key, &changed, first, t1)
	if c := next.Status.Conditions[0]; c.Status != metav1.ConditionFalse || !c.LastTransitionTime.Time.Equal(t1) {
		t.Fatalf("condition %+v", c)
	}
	if p := next.Status.Properties; p[0].Value != "us" || !p[0].LastObservedTime.Time.Equal(t1) || !p[1].LastObservedTime.Time.Equal(t0) {
		t.Fatalf("properties %+v", p)
	}
	// Without an endpoint, no credential provider.
	none := *facts
	none.endpoint = clusterinventory.Cluster{}
	if p := desiredProfile("inventory", key, &none, nil, t0); len(p.Status.CredentialProviders) != 0 {
		t.Fatalf("credential providers %+v", p.Status.CredentialProviders)
	}
	// A version and an endpoint nothing confirmed since the start leave the profile's as they are.
	none.version = ""
	if p := desiredProfile("inventory", key, &none, first, t1); p.Status.Version.Kubernetes != "v1.36.3" ||
		!reflect.DeepEqual(p.Status.CredentialProviders, first.Status.CredentialProviders) {
		t.Fatalf("version %q, credential providers %+v", p.Status.Version.Kubernetes, p.Status.CredentialProviders)
	}
	raw, err := json.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	var back clusterinventory.ClusterProfile
	if err := json.Unmarshal(raw, &back); err != nil || !reflect.DeepEqual(back.Status.CredentialProviders, first.Status.CredentialProviders) {
		t.Fatalf("round trip: %v", err)
	}
}
