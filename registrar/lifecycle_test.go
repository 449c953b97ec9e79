package registrar

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

const argoNS = "argocd"

// TestRegistrarLifecycle walks a fleet through registration, no-op reconciles, relabelling, token
// rotation, repair, conflicts, bad input, a controller restart, and deletion, checking after each step
// that the argocd namespace holds exactly the expected secrets.
func TestRegistrarLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := mgmt.Client
	must(t, mgmt.EnsureNamespace(ctx, argoNS, nil))

	edge1, err := mgmt.AddWorkload(ctx, "fleet-a", "edge-1", testenv.ClusterOptions{
		Labels: map[string]string{"env": "prod", "team/owner": "payments", "secret": "x"}, ClusterClass: "quick-start", Version: "v1.36.3"})
	must(t, err)
	edge2, err := mgmt.AddWorkload(ctx, "fleet-b", "edge-2", testenv.ClusterOptions{Labels: map[string]string{"env": "staging"}})
	must(t, err)
	k1, k2 := types.NamespacedName{Namespace: "fleet-a", Name: "edge-1"}, types.NamespacedName{Namespace: "fleet-b", Name: "edge-2"}

	rm := startManager(t)
	defer func() {
		if rm != nil {
			rm.stop(t)
		}
	}()

	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "fleet"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}}}},
			Labels:      fleetv1.LabelPolicy{Propagate: []string{"env", "team/*"}, Static: map[string]string{"fleet": "main"}},
			ArgoCD:      &fleetv1.ArgoCDTarget{Namespace: argoNS, Project: "platform"},
			Credentials: fleetv1.Credentials{TokenTTL: &metav1.Duration{Duration: time.Hour}},
		},
	}
	must(t, c.Create(ctx, reg))

	t.Run("registers both clusters", func(t *testing.T) {
		expectArgoSecrets(t, ctx, k1, k2)
		expectReady(t, ctx, "fleet", metav1.ConditionTrue, fleetv1.ReasonRegistered, 2, 2, 0)
		s1 := argoSecret(t, ctx, k1)
		want := map[string]string{
			"env": "prod", "team/owner": "payments", "fleet": "main",
			argocd.SecretTypeLabel: argocd.SecretTypeCluster, owned.LabelRegistration: "fleet",
			owned.LabelClusterNamespace: "fleet-a", owned.LabelClusterName: "edge-1",
			owned.LabelKubernetesVersion: "v1.36.3", owned.LabelClusterClass: "quick-start",
		}
		for k, v := range want {
			if s1.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, s1.Labels[k], v)
			}
		}
		if _, ok := s1.Labels["secret"]; ok {
			t.Error("a label outside the propagation patterns was copied")
		}
		if got := string(s1.Data["name"]); got != "fleet-a.edge-1" {
			t.Errorf("name = %q", got)
		}
		if got := string(s1.Data["project"]); got != "platform" {
			t.Errorf("project = %q", got)
		}
		if got := string(s1.Data["server"]); got != edge1.Server() {
			t.Errorf("server = %q, want %q", got, edge1.Server())
		}
		expectTokenWorks(t, ctx, s1, true)
		expectTokenWorks(t, ctx, argoSecret(t, ctx, k2), true)
		expectNoAdminCredentials(t, ctx, edge1, edge2)
		admin, err := kubeconfig.Parse(edge1.AdminKubeConfig)
		must(t, err)
		expectNotLeaked(t, ctx, string(admin.KeyData), bearerToken(t, s1))
		if got := testutil.ToFloat64(registeredClusters.WithLabelValues("fleet")); got != 2 {
			t.Errorf("fleetbridge_registered_clusters{registration=fleet} = %v", got)
		}
		if got := testutil.ToFloat64(tokenExpirySeconds.WithLabelValues("fleet", "fleet-a", "edge-1")); got < 3000 || got > 3600 {
			t.Errorf("fleetbridge_token_expiry_seconds = %v, want about an hour", got)
		}
		expectNoEvent(t, ctx, "edge-1", fleetv1.ReasonRegistered)
		writeFixtures(t, ctx, argoNS)
	})

	t.Run("no-op reconciles make zero writes", func(t *testing.T) {
		time.Sleep(time.Second) // let the watch events of the last writes settle
		rm.mgmtWrites.reset()
		rm.workloadWrites.reset()
		for i := 0; i < 10; i++ {
			for _, k := range []types.NamespacedName{k1, k2} {
				reconcileCluster(t, ctx, rm, k)
			}
		}
		time.Sleep(2 * time.Second) // a status pass the reconciles might have caused (debounced 1 s)
		if n := rm.mgmtWrites.n.Load(); n != 0 {
			t.Fatalf("20 no-op reconciles wrote %d times to the management server: %s", n, rm.mgmtWrites)
		}
		if n := rm.workloadWrites.n.Load(); n != 0 {
			t.Fatalf("20 no-op reconciles wrote %d times to workload servers: %s", n, rm.workloadWrites)
		}
	})

	t.Run("relabelling a Cluster reaches its secret", func(t *testing.T) {
		patchLabels(t, ctx, k1, map[string]string{"env": "prod", "team/owner": "search", "region": "eu"})
		testenv.Eventually(t, 10*time.Second, "label update", func() error {
			s := argoSecret(t, ctx, k1)
			if s.Labels["team/owner"] != "search" {
				return fmt.Errorf("team/owner = %q", s.Labels["team/owner"])
			}
			return nil
		})
		patchLabels(t, ctx, k1, map[string]string{"env": "prod"})
		testenv.Eventually(t, 10*time.Second, "label removal", func() error {
			if v, ok := argoSecret(t, ctx, k1).Labels["team/owner"]; ok {
				return fmt.Errorf("team/owner still %q", v)
			}
			return nil
		})
	})

	t.Run("tokens rotate before expiry and old ones keep working", func(t *testing.T) {
		before := argoSecret(t, ctx, k1)
		oldToken := bearerToken(t, before)
		oldToken2 := bearerToken(t, argoSecret(t, ctx, k2))
		rm.clock.Advance(pastRenewal)
		reconcileCluster(t, ctx, rm, k1)
		after := argoSecret(t, ctx, k1)
		if bearerToken(t, after) == oldToken {
			t.Fatal("token was not renewed")
		}
		if after.Annotations[owned.AnnotationTokenIssuedAt] == before.Annotations[owned.AnnotationTokenIssuedAt] {
			t.Fatal("token timing annotations were not updated")
		}
		expectTokenWorks(t, ctx, after, true)
		expectTokenWorks(t, ctx, before, true)
		expectNotLeaked(t, ctx, oldToken, bearerToken(t, after))
		// The renewal scheduler renews edge-2 on its own: its window passed too.
		testenv.Eventually(t, 20*time.Second, "edge-2 renewed by the scheduler", func() error {
			if bearerToken(t, argoSecret(t, ctx, k2)) == oldToken2 {
				return fmt.Errorf("edge-2 still has its first token")
			}
			return nil
		})
		// The renewed token is not renewed again at once.
		settle(t, ctx, rm, k1)
		settle(t, ctx, rm, k2)
		rm.mgmtWrites.reset()
		reconcileCluster(t, ctx, rm, k1)
		if n := rm.mgmtWrites.n.Load(); n != 0 {
			t.Fatalf("a fresh token was renewed again: %s", rm.mgmtWrites)
		}
	})

	t.Run("hand edits and deletions are repaired, foreign fields tolerated", func(t *testing.T) {
		s := argoSecret(t, ctx, k1)
		s.Data["server"] = []byte("https://evil.example.com")
		s.Labels["argocd.argoproj.io/auto-label-cluster-info"] = "true"
		s.Labels["argocd.argoproj.io/kubernetes-version"] = "1.36"
		must(t, c.Update(ctx, s))
		testenv.Eventually(t, 10*time.Second, "server repaired", func() error {
			if got := string(argoSecret(t, ctx, k1).Data["server"]); got != edge1.Server() {
				return fmt.Errorf("server = %q", got)
			}
			return nil
		})
		if argoSecret(t, ctx, k1).Labels["argocd.argoproj.io/kubernetes-version"] != "1.36" {
			t.Fatal("a label Argo CD added was removed")
		}
		settle(t, ctx, rm, k1)
		rm.mgmtWrites.reset()
		reconcileCluster(t, ctx, rm, k1)
		if n := rm.mgmtWrites.n.Load(); n != 0 {
			t.Fatalf("tolerating Argo CD's labels cost writes: %s", rm.mgmtWrites)
		}
		must(t, c.Delete(ctx, argoSecret(t, ctx, k1)))
		expectArgoSecrets(t, ctx, k1, k2)
	})

	t.Run("a second Registration for the same namespace conflicts", func(t *testing.T) {
		dup := &fleetv1.Registration{
			ObjectMeta: metav1.ObjectMeta{Name: "fleet-dup"},
			Spec: fleetv1.RegistrationSpec{
				ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
				ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: argoNS},
				Credentials:     fleetv1.Credentials{ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-dup"}},
			},
		}
		must(t, c.Create(ctx, dup))
		expectReady(t, ctx, "fleet-dup", metav1.ConditionFalse, fleetv1.ReasonPartiallyRegistered, 1, 0, 1)
		got := registration(t, ctx, "fleet-dup")
		if len(got.Status.Failures) != 1 || got.Status.Failures[0].Reason != fleetv1.ReasonConflict {
			t.Fatalf("failures = %+v", got.Status.Failures)
		}
		expectArgoSecrets(t, ctx, k1, k2)
		must(t, c.Delete(ctx, dup))
		testenv.Eventually(t, 10*time.Second, "fleet-dup gone", func() error {
			if err := c.Get(ctx, types.NamespacedName{Name: "fleet-dup"}, &fleetv1.Registration{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there: %v", err)
			}
			return nil
		})
		expectArgoSecrets(t, ctx, k1, k2)
	})

	t.Run("bad kubeconfigs and unreachable clusters fail alone", func(t *testing.T) {
		must(t, mgmt.PublishCluster(ctx, "fleet-c", "broken", "https://127.0.0.1:1", []byte("not: [a kubeconfig"), testenv.ClusterOptions{Labels: map[string]string{"env": "prod"}}))
		unreachable := bytes.ReplaceAll(edge2.AdminKubeConfig, []byte(edge2.Server()), []byte("https://127.0.0.1:1"))
		must(t, mgmt.PublishCluster(ctx, "fleet-c", "gone", "https://127.0.0.1:1", unreachable, testenv.ClusterOptions{Labels: map[string]string{"env": "prod"}}))
		must(t, mgmt.PublishCluster(ctx, "fleet-c", "young", "https://127.0.0.1:1", unreachable, testenv.ClusterOptions{Labels: map[string]string{"env": "prod"}, NotInitialized: true}))
		testenv.Eventually(t, 20*time.Second, "failures reported", func() error {
			got := registration(t, ctx, "fleet")
			reasons := map[string]string{}
			for _, f := range got.Status.Failures {
				reasons[f.Name] = f.Reason
			}
			if reasons["broken"] != fleetv1.ReasonKubeconfigInvalid || reasons["gone"] != fleetv1.ReasonClusterUnreachable || len(reasons) != 2 {
				return fmt.Errorf("failures = %+v", got.Status.Failures)
			}
			if got.Status.Selected != 5 || got.Status.Registered != 2 || got.Status.Failing != 2 {
				return fmt.Errorf("counts = %d/%d/%d", got.Status.Selected, got.Status.Registered, got.Status.Failing)
			}
			return nil
		})
		expectEvent(t, ctx, "broken", fleetv1.ReasonKubeconfigInvalid)
		expectEvent(t, ctx, "gone", fleetv1.ReasonClusterUnreachable)
		expectArgoSecrets(t, ctx, k1, k2)
	})

	t.Run("a restart converges and sweeps orphans", func(t *testing.T) {
		rm.stop(t)
		rm = nil
		// While the controller is down: an owned secret for a Cluster that no longer exists, a deleted
		// secret, and a deleted Cluster.
		orphan := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: argoNS, Name: "fleetbridge-orphan",
			Labels: owned.Labels("fleet", types.NamespacedName{Namespace: "fleet-x", Name: "vanished"}, owned.OutputArgoCD)}}
		must(t, c.Create(ctx, orphan))
		must(t, c.Delete(ctx, argoSecret(t, ctx, k2)))
		for _, name := range []string{"broken", "gone", "young"} {
			must(t, c.Delete(ctx, &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-c", Name: name}}))
		}
		rm = startManager(t)
		expectArgoSecrets(t, ctx, k1, k2)
		expectReady(t, ctx, "fleet", metav1.ConditionTrue, fleetv1.ReasonRegistered, 2, 2, 0)
	})

	t.Run("a Cluster that stops matching is deregistered", func(t *testing.T) {
		patchLabels(t, ctx, k2, map[string]string{"env": "dev"})
		expectArgoSecrets(t, ctx, k1)
		testenv.Eventually(t, 10*time.Second, "workload access removed", func() error {
			sa := &corev1.ServiceAccount{}
			err := edge2.Client.Get(ctx, types.NamespacedName{Namespace: "kube-system", Name: "fleetbridge-argocd"}, sa)
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("ServiceAccount still there: %v", err)
			}
			return nil
		})
	})

	t.Run("a deleted Cluster is deregistered", func(t *testing.T) {
		patchLabels(t, ctx, k2, map[string]string{"env": "staging"})
		expectArgoSecrets(t, ctx, k1, k2)
		must(t, c.Delete(ctx, &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: k2.Namespace, Name: k2.Name}}))
		expectArgoSecrets(t, ctx, k1)
	})

	t.Run("deleting the Registration removes everything and revokes tokens", func(t *testing.T) {
		s1 := argoSecret(t, ctx, k1)
		must(t, c.Delete(ctx, &fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}}))
		expectArgoSecrets(t, ctx)
		testenv.Eventually(t, 10*time.Second, "Registration gone", func() error {
			if err := c.Get(ctx, types.NamespacedName{Name: "fleet"}, &fleetv1.Registration{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there: %v", err)
			}
			return nil
		})
		testenv.Eventually(t, 10*time.Second, "token revoked", func() error {
			return expectTokenFails(ctx, s1)
		})
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// reconcileCluster has the controller reconcile a Cluster through the API, as anything else would: an
// annotation on the Cluster changes, its watch passes that on, and this waits until a reconcile that
// started after the change has finished. Tests use it after moving the clock.
func reconcileCluster(t *testing.T, ctx context.Context, rm *runningManager, key types.NamespacedName) {
	t.Helper()
	sent := nudgeCluster(t, ctx, key)
	testenv.Eventually(t, 20*time.Second, "a reconcile of "+key.String(), func() error {
		if !rm.reconciles.since(key, sent) {
			return fmt.Errorf("none has finished since %s", sent.Format(time.RFC3339Nano))
		}
		return nil
	})
}

// nudgeCluster changes an annotation on a Cluster, which its watch passes on to the controller, and
// returns when the change was sent.
func nudgeCluster(t *testing.T, ctx context.Context, key types.NamespacedName) time.Time {
	t.Helper()
	sent := time.Now()
	cluster := &clusterv1.Cluster{}
	must(t, mgmt.Client.Get(ctx, key, cluster))
	base := cluster.DeepCopy()
	if cluster.Annotations == nil {
		cluster.Annotations = map[string]string{}
	}
	cluster.Annotations["fleetbridge.io/test-reconcile"] = sent.Format(time.RFC3339Nano)
	must(t, mgmt.Client.Patch(ctx, cluster, client.MergeFrom(base)))
	return sent
}

// settle waits until the manager's cache shows the latest version of a cluster's Argo CD secret, as it
// does before any watch-triggered reconcile; direct Reconcile calls would otherwise read a stale cache.
func settle(t *testing.T, ctx context.Context, rm *runningManager, key types.NamespacedName) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "cache settles", func() error {
		live := argoSecret(t, ctx, key)
		cached := &corev1.Secret{}
		if err := rm.reg.Clusters.Client.Get(ctx, client.ObjectKeyFromObject(live), cached); err != nil {
			return err
		}
		if cached.ResourceVersion != live.ResourceVersion {
			return fmt.Errorf("cache at %s, server at %s", cached.ResourceVersion, live.ResourceVersion)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // and the reconcile that event triggered has finished
}

func patchLabels(t *testing.T, ctx context.Context, key types.NamespacedName, labels map[string]string) {
	t.Helper()
	cluster := &clusterv1.Cluster{}
	must(t, mgmt.Client.Get(ctx, key, cluster))
	base := cluster.DeepCopy()
	cluster.Labels = labels
	must(t, mgmt.Client.Patch(ctx, cluster, client.MergeFrom(base)))
}

func argoSecret(t *testing.T, ctx context.Context, key types.NamespacedName) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: argoNS, Name: argoSecretName(key)}, s))
	return s
}

func registration(t *testing.T, ctx context.Context, name string) *fleetv1.Registration {
	t.Helper()
	reg := &fleetv1.Registration{}
	must(t, mgmt.Client.Get(ctx, types.NamespacedName{Name: name}, reg))
	return reg
}

// expectArgoSecrets waits until the argocd namespace holds exactly one cluster Secret per key.
func expectArgoSecrets(t *testing.T, ctx context.Context, keys ...types.NamespacedName) {
	t.Helper()
	var want []string
	for _, k := range keys {
		want = append(want, argoSecretName(k))
	}
	sort.Strings(want)
	testenv.Eventually(t, 20*time.Second, "argocd secrets", func() error {
		list := &corev1.SecretList{}
		if err := mgmt.Client.List(ctx, list, client.InNamespace(argoNS)); err != nil {
			return err
		}
		var got []string
		for _, s := range list.Items {
			got = append(got, s.Name)
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("secrets %v, want %v", got, want)
		}
		return nil
	})
}

func expectReady(t *testing.T, ctx context.Context, name string, status metav1.ConditionStatus, reason string, selected, registered, failing int32) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, "Registration "+name+" status", func() error {
		reg := &fleetv1.Registration{}
		if err := mgmt.Client.Get(ctx, types.NamespacedName{Name: name}, reg); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(reg.Status.Conditions, fleetv1.ReadyCondition)
		if cond == nil || cond.Status != status || cond.Reason != reason {
			return fmt.Errorf("Ready = %+v", cond)
		}
		if reg.Status.Selected != selected || reg.Status.Registered != registered || reg.Status.Failing != failing {
			return fmt.Errorf("counts = %d/%d/%d", reg.Status.Selected, reg.Status.Registered, reg.Status.Failing)
		}
		if reg.Status.ObservedGeneration != reg.Generation {
			return fmt.Errorf("observedGeneration %d != %d", reg.Status.ObservedGeneration, reg.Generation)
		}
		return nil
	})
}

func expectEvent(t *testing.T, ctx context.Context, clusterName, reason string) {
	t.Helper()
	expectEventNote(t, ctx, clusterName, reason, "")
}

// expectNoEvent fails if a Cluster has an Event with reason.
func expectNoEvent(t *testing.T, ctx context.Context, clusterName, reason string) {
	t.Helper()
	list := &eventsv1.EventList{}
	must(t, mgmt.Client.List(ctx, list))
	for _, e := range list.Items {
		if e.Regarding.Kind == "Cluster" && e.Regarding.Name == clusterName && e.Reason == reason {
			t.Fatalf("Cluster %s has a %s Event: %s", clusterName, reason, e.Note)
		}
	}
}

func bearerToken(t *testing.T, s *corev1.Secret) string {
	t.Helper()
	cfg, err := argocd.ParseConfig(s.Data["config"])
	must(t, err)
	if cfg.BearerToken == "" {
		t.Fatal("no bearer token in config")
	}
	return cfg.BearerToken
}

// restConfigFromArgoSecret builds a client config from an Argo CD cluster Secret, as Argo CD does.
func restConfigFromArgoSecret(s *corev1.Secret) (*rest.Config, error) {
	cfg, err := argocd.ParseConfig(s.Data["config"])
	if err != nil {
		return nil, err
	}
	return &rest.Config{Host: string(s.Data["server"]), BearerToken: cfg.BearerToken, TLSClientConfig: rest.TLSClientConfig{
		CAData: cfg.TLSClientConfig.CAData, CertData: cfg.TLSClientConfig.CertData, KeyData: cfg.TLSClientConfig.KeyData,
		Insecure: cfg.TLSClientConfig.Insecure, ServerName: cfg.TLSClientConfig.ServerName}}, nil
}

func expectTokenWorks(t *testing.T, ctx context.Context, s *corev1.Secret, _ bool) {
	t.Helper()
	cfg, err := restConfigFromArgoSecret(s)
	must(t, err)
	cl, err := client.New(cfg, client.Options{})
	must(t, err)
	if err := cl.List(ctx, &corev1.NamespaceList{}); err != nil {
		t.Fatalf("the registered credentials cannot list namespaces: %v", err)
	}
}

func expectTokenFails(ctx context.Context, s *corev1.Secret) error {
	cfg, err := restConfigFromArgoSecret(s)
	if err != nil {
		return err
	}
	cl, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil // discovery refused the token already
	}
	if err := cl.List(ctx, &corev1.NamespaceList{}); err == nil {
		return fmt.Errorf("token still lists namespaces")
	}
	return nil
}

// expectNoAdminCredentials checks that no byte of the CAPI admin credentials reached the argocd namespace.
func expectNoAdminCredentials(t *testing.T, ctx context.Context, workloads ...*testenv.Workload) {
	t.Helper()
	list := &corev1.SecretList{}
	must(t, mgmt.Client.List(ctx, list, client.InNamespace(argoNS)))
	for _, w := range workloads {
		creds, err := kubeconfig.Parse(w.AdminKubeConfig)
		must(t, err)
		for _, secret := range []string{string(creds.KeyData), string(creds.CertData)} {
			b64 := base64.StdEncoding.EncodeToString([]byte(secret))
			for _, s := range list.Items {
				for k, v := range s.Data {
					if bytes.Contains(v, []byte(secret)) || bytes.Contains(v, []byte(b64)) {
						t.Fatalf("Secret %s key %s holds CAPI admin credentials", s.Name, k)
					}
				}
			}
		}
	}
}

// expectNotLeaked checks that no log line, Event or Registration status carries the given credentials.
func expectNotLeaked(t *testing.T, ctx context.Context, secrets ...string) {
	t.Helper()
	var texts []string
	texts = append(texts, testLogs.String())
	events := &eventsv1.EventList{}
	must(t, mgmt.Client.List(ctx, events))
	for _, e := range events.Items {
		texts = append(texts, e.Note)
	}
	regs := &fleetv1.RegistrationList{}
	must(t, mgmt.Client.List(ctx, regs))
	for _, r := range regs.Items {
		out, _ := yaml.Marshal(r.Status)
		texts = append(texts, string(out))
	}
	for _, secret := range secrets {
		for _, text := range texts {
			if strings.Contains(text, secret) {
				t.Fatal("a credential appears in logs, Events or status")
			}
		}
	}
	if !strings.Contains(testLogs.String(), "minted ServiceAccount token") {
		t.Fatal("the controller logs were not captured; the check above proves nothing")
	}
}

// writeFixtures hands the produced Argo CD cluster Secrets to hack/conformance, which feeds them to
// Argo CD's own parser. make test sets FLEETBRIDGE_FIXTURES.
func writeFixtures(t *testing.T, ctx context.Context, namespace string) {
	t.Helper()
	dir := os.Getenv("FLEETBRIDGE_FIXTURES")
	if dir == "" {
		return
	}
	dir = filepath.Join(dir, "argocd-cluster-secrets")
	must(t, os.MkdirAll(dir, 0o755))
	list := &corev1.SecretList{}
	must(t, mgmt.Client.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{argocd.SecretTypeLabel: argocd.SecretTypeCluster}))
	for _, s := range list.Items {
		s.ManagedFields = nil
		out, err := yaml.Marshal(s)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, s.Name+".yaml"), out, 0o600))
	}
}
