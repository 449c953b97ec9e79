package registrar

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/clusterinventory"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// ClusterProfiles, written through a real API server that has the upstream CRD (hack/crds), so its
// schema checks every profile: one per registered Cluster in the profile namespace, with the version,
// the ControlPlaneHealthy condition, the propagated labels as properties and the endpoint (server and
// CA, no credential); updated when labels, version or health change and not written when nothing
// does; written back when someone deletes or edits it; someone else's profile of the same name is left
// alone; removed on deregistration.
func TestClusterProfiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := mgmt.Client
	const inventory, argoNS = "fleet-inventory", "argocd-profiles"
	must(t, mgmt.EnsureNamespace(ctx, inventory, nil))
	must(t, mgmt.EnsureNamespace(ctx, argoNS, nil))
	labels := map[string]string{"profiles": "yes", "region": "eu-west", "secret-tier": "gold"}
	w, err := mgmt.AddWorkload(ctx, "fleet-prof", "prof-1", testenv.ClusterOptions{Labels: labels})
	must(t, err)
	key := types.NamespacedName{Namespace: "fleet-prof", Name: "prof-1"}
	setControlPlaneAvailable(t, ctx, key, metav1.ConditionTrue)
	// Someone else's profile holds the name of a second Cluster's profile.
	other := types.NamespacedName{Namespace: "fleet-prof", Name: "prof-2"}
	foreign := &clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: inventory, Name: profileName(other)},
		Spec: clusterinventory.ClusterProfileSpec{ClusterManager: clusterinventory.ClusterManager{Name: "someone-else"}}}
	must(t, c.Create(ctx, foreign))
	_, err = mgmt.AddWorkload(ctx, other.Namespace, other.Name, testenv.ClusterOptions{Labels: labels})
	must(t, err)

	rm := startManagerWith(t, func(o *Options) { o.Namespaces.ClusterProfiles = inventory })
	defer func() {
		if rm != nil {
			rm.stop(t)
		}
	}()
	must(t, c.Create(ctx, &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "profiles"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"profiles": "yes"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: argoNS},
			Labels:          fleetv1.LabelPolicy{Propagate: []string{"region", "secret-*"}},
		},
	}))

	version, err := discovery.NewDiscoveryClientForConfigOrDie(w.Config).ServerVersion()
	must(t, err)
	name := types.NamespacedName{Namespace: inventory, Name: profileName(key)}
	var profile *clusterinventory.ClusterProfile
	testenv.Eventually(t, 30*time.Second, "the Cluster's profile", func() error {
		p, err := getProfile(ctx, name)
		if err != nil {
			return err
		}
		profile = p
		return expectProfile(p, version.GitVersion, metav1.ConditionTrue, fleetv1.ReasonControlPlaneAvailable, map[string]string{"region": "eu-west", "secret-tier": "gold"})
	})
	if ep := profile.Status.CredentialProviders; len(ep) != 1 || ep[0].Name != "fleetbridge" || ep[0].Cluster.Server != w.Server() ||
		!bytes.Equal(ep[0].Cluster.CertificateAuthorityData, w.Config.CAData) {
		t.Fatalf("credential providers %+v", ep)
	}
	if profile.Spec.ClusterManager.Name != "fleetbridge" || profile.Spec.DisplayName != "prof-1" || profile.Labels[clusterinventory.LabelClusterManager] != "fleetbridge" {
		t.Fatalf("profile %+v %+v", profile.Labels, profile.Spec)
	}
	argo := &corev1.Secret{}
	must(t, c.Get(ctx, types.NamespacedName{Namespace: argoNS, Name: argoSecretName(key)}, argo))
	expectNoCredentials(t, profile, bearerToken(t, argo), w.Config.CertData, w.Config.KeyData)

	// The other Cluster's name is taken: its owner's profile is left as it was, and the Cluster gets a
	// Warning Event.
	expectEvent(t, ctx, other.Name, fleetv1.ReasonProfileConflict)
	kept, err := getProfile(ctx, types.NamespacedName{Namespace: inventory, Name: profileName(other)})
	must(t, err)
	if kept.Spec.ClusterManager.Name != "someone-else" || len(kept.Labels) != 0 || len(kept.Status.Conditions) != 0 {
		t.Fatalf("someone else's profile changed: %+v", kept)
	}

	// Nothing changes: a reconcile writes no profile.
	settleProfile(t, ctx, rm, name)
	rm.mgmtWrites.reset()
	reconcileCluster(t, ctx, rm, key)
	time.Sleep(500 * time.Millisecond)
	if strings.Contains(rm.mgmtWrites.String(), "clusterprofiles") {
		t.Fatalf("an unchanged Cluster wrote its profile: %s", rm.mgmtWrites)
	}

	// A propagated label changes; another label does not count.
	patchLabels(t, ctx, key, map[string]string{"profiles": "yes", "region": "eu-north", "secret-tier": "gold", "unpropagated": "x"})
	testenv.Eventually(t, 20*time.Second, "the label change", func() error {
		p, err := getProfile(ctx, name)
		if err != nil {
			return err
		}
		return expectProfile(p, version.GitVersion, metav1.ConditionTrue, fleetv1.ReasonControlPlaneAvailable, map[string]string{"region": "eu-north", "secret-tier": "gold"})
	})

	// A new version (Cluster API upgraded the control plane): the workload server's binary cannot change
	// here, so the facts the Cluster controller hands over carry it, and the profile follows; the next
	// reconcile of the Cluster brings back the version the probe finds.
	facts, _ := rm.reg.Clusters.profiles.get(key)
	upgraded := *facts
	upgraded.version = "v1.99.0"
	rm.reg.Clusters.profiles.set(key, &upgraded)
	testenv.Eventually(t, 20*time.Second, "the new version", func() error {
		p, err := getProfile(ctx, name)
		if err != nil {
			return err
		}
		if p.Status.Version.Kubernetes != "v1.99.0" {
			return fmt.Errorf("version %q", p.Status.Version.Kubernetes)
		}
		return nil
	})
	nudgeCluster(t, ctx, key)
	testenv.Eventually(t, 20*time.Second, "the probed version again", func() error {
		p, err := getProfile(ctx, name)
		if err != nil {
			return err
		}
		if p.Status.Version.Kubernetes != version.GitVersion {
			return fmt.Errorf("version %q", p.Status.Version.Kubernetes)
		}
		return nil
	})

	// Cluster API reports the control plane unavailable.
	setControlPlaneAvailable(t, ctx, key, metav1.ConditionFalse)
	testenv.Eventually(t, 20*time.Second, "ControlPlaneHealthy False", func() error {
		p, err := getProfile(ctx, name)
		if err != nil {
			return err
		}
		return expectProfile(p, version.GitVersion, metav1.ConditionFalse, fleetv1.ReasonControlPlaneNotAvailable, nil)
	})
	setControlPlaneAvailable(t, ctx, key, metav1.ConditionTrue)

	// Someone edits the status, then deletes the profile: it is written back each time.
	settleProfile(t, ctx, rm, name)
	p, err := getProfile(ctx, name)
	must(t, err)
	p.Status.Version.Kubernetes = "v0.0.1-tampered"
	must(t, c.Status().Update(ctx, p))
	testenv.Eventually(t, 20*time.Second, "the edit undone", func() error {
		p, err := getProfile(ctx, name)
		if err != nil {
			return err
		}
		return expectProfile(p, version.GitVersion, metav1.ConditionTrue, fleetv1.ReasonControlPlaneAvailable, nil)
	})
	deleted, err := getProfile(ctx, name)
	must(t, err)
	must(t, c.Delete(ctx, deleted))
	testenv.Eventually(t, 20*time.Second, "the profile back", func() error {
		p, err := getProfile(ctx, name)
		if err != nil {
			return err
		}
		if p.UID == deleted.UID {
			return fmt.Errorf("still the deleted profile")
		}
		return expectProfile(p, version.GitVersion, metav1.ConditionTrue, fleetv1.ReasonControlPlaneAvailable, nil)
	})

	// The workload API server goes away: the profile stays, unhealthy.
	must(t, w.Stop())
	nudgeCluster(t, ctx, key)
	testenv.Eventually(t, 30*time.Second, "ControlPlaneHealthy False while unreachable", func() error {
		p, err := getProfile(ctx, name)
		if err != nil {
			return err
		}
		return expectProfile(p, version.GitVersion, metav1.ConditionFalse, fleetv1.ReasonClusterUnreachable, nil)
	})

	// A restart knows nothing of the profile until the Cluster is reconciled, and changes nothing.
	rm.stop(t)
	before, err := getProfile(ctx, name)
	must(t, err)
	rm = startManagerWith(t, func(o *Options) { o.Namespaces.ClusterProfiles = inventory })
	reconcileCluster(t, ctx, rm, key)
	time.Sleep(time.Second)
	after, err := getProfile(ctx, name)
	must(t, err)
	if after.UID != before.UID || after.ResourceVersion != before.ResourceVersion {
		t.Fatalf("a restart rewrote the profile (%s -> %s)", before.ResourceVersion, after.ResourceVersion)
	}

	// Deregistration removes it; someone else's profile stays.
	reg := registration(t, ctx, "profiles")
	must(t, c.Delete(ctx, reg))
	testenv.Eventually(t, 30*time.Second, "the profile removed", func() error {
		if _, err := getProfile(ctx, name); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	if _, err := getProfile(ctx, types.NamespacedName{Namespace: inventory, Name: profileName(other)}); err != nil {
		t.Fatalf("someone else's profile: %v", err)
	}
}

func getProfile(ctx context.Context, key types.NamespacedName) (*clusterinventory.ClusterProfile, error) {
	p := &clusterinventory.ClusterProfile{}
	return p, mgmt.Client.Get(ctx, key, p)
}

// expectProfile checks a profile's version, ControlPlaneHealthy condition and (unless nil) properties.
func expectProfile(p *clusterinventory.ClusterProfile, version string, health metav1.ConditionStatus, reason string, properties map[string]string) error {
	if p.Status.Version.Kubernetes != version {
		return fmt.Errorf("version %q, want %q", p.Status.Version.Kubernetes, version)
	}
	c := meta.FindStatusCondition(p.Status.Conditions, clusterinventory.ConditionControlPlaneHealthy)
	if c == nil || c.Status != health || c.Reason != reason {
		return fmt.Errorf("ControlPlaneHealthy %+v, want %s %s", c, health, reason)
	}
	if properties == nil {
		return nil
	}
	got := map[string]string{}
	for _, prop := range p.Status.Properties {
		got[prop.Name] = prop.Value
		if prop.LastObservedTime.IsZero() {
			return fmt.Errorf("property %s has no lastObservedTime", prop.Name)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(properties) {
		return fmt.Errorf("properties %v, want %v", got, properties)
	}
	return nil
}

// expectNoCredentials fails if a profile holds any of the credentials, raw or base64-encoded.
func expectNoCredentials(t *testing.T, p *clusterinventory.ClusterProfile, token string, secrets ...[]byte) {
	t.Helper()
	raw, err := json.Marshal(p)
	must(t, err)
	if token == "" {
		t.Fatal("no token to look for")
	}
	for _, s := range append(secrets, []byte(token)) {
		if len(s) == 0 {
			t.Fatal("an empty credential to look for")
		}
		for _, form := range [][]byte{s, []byte(base64.StdEncoding.EncodeToString(s))} {
			if bytes.Contains(raw, form) {
				t.Fatalf("the profile holds a credential: %s", raw)
			}
		}
	}
	for _, field := range []string{`"token"`, `"client-certificate-data"`, `"client-key-data"`, `"password"`, `"exec"`} {
		if strings.Contains(string(raw), field) {
			t.Fatalf("the profile has a %s field: %s", field, raw)
		}
	}
}

// setControlPlaneAvailable sets Cluster API's ControlPlaneAvailable condition on a Cluster.
func setControlPlaneAvailable(t *testing.T, ctx context.Context, key types.NamespacedName, status metav1.ConditionStatus) {
	t.Helper()
	cluster := &clusterv1.Cluster{}
	must(t, mgmt.Client.Get(ctx, key, cluster))
	meta.SetStatusCondition(&cluster.Status.Conditions, metav1.Condition{Type: clusterv1.ClusterControlPlaneAvailableCondition, Status: status,
		Reason: "Testbed", Message: "as the test says", ObservedGeneration: cluster.Generation})
	must(t, mgmt.Client.Status().Update(ctx, cluster))
}

// settleProfile waits until the manager's cache shows the profile's latest version.
func settleProfile(t *testing.T, ctx context.Context, rm *runningManager, key types.NamespacedName) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "the profile cache settles", func() error {
		live, err := getProfile(ctx, key)
		if err != nil {
			return err
		}
		cached := &clusterinventory.ClusterProfile{}
		if err := rm.reg.Clusters.Client.Get(ctx, key, cached); err != nil {
			return err
		}
		if cached.ResourceVersion != live.ResourceVersion {
			return fmt.Errorf("cache at %s, server at %s", cached.ResourceVersion, live.ResourceVersion)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
}
