package registrar

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/flux"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// editKubeconfig rewrites the current context's cluster and user of a kubeconfig.
func editKubeconfig(t *testing.T, data []byte, edit func(*clientcmdapi.Cluster, *clientcmdapi.AuthInfo)) []byte {
	t.Helper()
	cfg, err := clientcmd.Load(data)
	must(t, err)
	kctx := cfg.Contexts[cfg.CurrentContext]
	edit(cfg.Clusters[kctx.Cluster], cfg.AuthInfos[kctx.AuthInfo])
	out, err := clientcmd.Write(*cfg)
	must(t, err)
	return out
}

// failureOf waits until a Registration reports a failure for a Cluster and returns it.
func failureOf(t *testing.T, ctx context.Context, regName string, key types.NamespacedName) fleetv1.ClusterFailure {
	t.Helper()
	var out fleetv1.ClusterFailure
	testenv.Eventually(t, 20*time.Second, "failure of "+key.String(), func() error {
		for _, f := range registration(t, ctx, regName).Status.Failures {
			if f.Namespace == key.Namespace && f.Name == key.Name {
				out = f
				return nil
			}
		}
		return fmt.Errorf("no failure reported for %s", key)
	})
	return out
}

// expectEventNote waits for an Event on a Cluster with a reason whose note says what is expected.
func expectEventNote(t *testing.T, ctx context.Context, clusterName, reason, says string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "event "+reason+" on "+clusterName, func() error {
		list := &eventsv1.EventList{}
		if err := mgmt.Client.List(ctx, list); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Kind == "Cluster" && e.Regarding.Name == clusterName && e.Reason == reason && strings.Contains(e.Note, says) {
				return nil
			}
		}
		return fmt.Errorf("no such event among %d", len(list.Items))
	})
}

func expectNoSecret(t *testing.T, ctx context.Context, key types.NamespacedName) {
	t.Helper()
	err := mgmt.Client.Get(ctx, key, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("Secret %s: %v, want none", key, err)
	}
}

// Exec plugins are refused by default in both modes; an allowlisted one (within the flag's ceiling) is
// forwarded in Kubeconfig mode, and status says the controller could not verify it. Without a working
// credential nothing is registered: an anonymous 401 does not count as a reachable cluster.
func TestExecPluginsNeedTheAllowlist(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "argocd-exec"
	must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	w, err := mgmt.AddWorkload(ctx, "fleet-exec", "embedded", testenv.ClusterOptions{Labels: map[string]string{"exec": "test"}})
	must(t, err)
	execOnly := editKubeconfig(t, w.AdminKubeConfig, func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
		*u = clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "argocd-k8s-auth", Args: []string{"aws", "--cluster-name", "edge"},
			APIVersion: "client.authentication.k8s.io/v1beta1", InteractiveMode: clientcmdapi.NeverExecInteractiveMode}}
	})
	shell := editKubeconfig(t, execOnly, func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.Exec.Command = "/bin/sh" })
	badToken := editKubeconfig(t, w.AdminKubeConfig, func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
		*u = clientcmdapi.AuthInfo{Token: "not-a-valid-token"}
	})
	execKey := types.NamespacedName{Namespace: "fleet-exec", Name: "exec-only"}
	shellKey := types.NamespacedName{Namespace: "fleet-exec", Name: "shell"}
	badKey := types.NamespacedName{Namespace: "fleet-exec", Name: "bad-token"}
	for key, kc := range map[types.NamespacedName][]byte{execKey: execOnly, shellKey: shell, badKey: badToken} {
		// Each Cluster names the same server differently, so the server URLs do not collide.
		server := strings.Replace(w.Server(), "127.0.0.1", "localhost", 1)
		if key == shellKey {
			server = w.Server() + "/"
		}
		kc = editKubeconfig(t, kc, func(c *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) { c.Server = server })
		must(t, mgmt.PublishCluster(ctx, key.Namespace, key.Name, server, kc, testenv.ClusterOptions{Labels: map[string]string{"exec": "test"}}))
	}

	rm := startManagerWith(t, func(o *Options) { o.AllowedExecCommands = []string{"argocd-k8s-auth"} })
	defer rm.stop(t)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "exec"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"exec": "test"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: ns},
			Credentials:     fleetv1.Credentials{Mode: fleetv1.CredentialsKubeconfig},
		},
	}
	must(t, mgmt.Client.Create(ctx, reg))
	defer deleteRegistrationAndWait(t, ctx, reg.Name) // before the manager stops: a stop during a deletion is another test

	argoKey := func(k types.NamespacedName) types.NamespacedName {
		return types.NamespacedName{Namespace: ns, Name: argoSecretName(k)}
	}
	t.Run("refused by default", func(t *testing.T) {
		for _, k := range []types.NamespacedName{execKey, shellKey} {
			if f := failureOf(t, ctx, reg.Name, k); f.Reason != fleetv1.ReasonExecNotAllowed {
				t.Fatalf("%s: %+v, want %s", k, f, fleetv1.ReasonExecNotAllowed)
			}
			expectNoSecret(t, ctx, argoKey(k))
		}
		expectEvent(t, ctx, execKey.Name, fleetv1.ReasonExecNotAllowed)
	})
	t.Run("a refused credential registers nothing", func(t *testing.T) {
		if f := failureOf(t, ctx, reg.Name, badKey); f.Reason != fleetv1.ReasonAccessDenied {
			t.Fatalf("%+v, want %s", f, fleetv1.ReasonAccessDenied)
		}
		expectNoSecret(t, ctx, argoKey(badKey))
	})
	t.Run("allowlisted within the ceiling", func(t *testing.T) {
		cur := registration(t, ctx, reg.Name)
		// /bin/sh is outside the controller's ceiling: asking for it does not allow it.
		cur.Spec.Credentials.AllowedExecCommands = []string{"argocd-k8s-auth", "/bin/sh"}
		must(t, mgmt.Client.Update(ctx, cur))
		testenv.Eventually(t, 20*time.Second, "exec plugin forwarded", func() error {
			s := &corev1.Secret{}
			if err := mgmt.Client.Get(ctx, argoKey(execKey), s); err != nil {
				return err
			}
			cfg, err := argocd.ParseConfig(s.Data[argocd.KeyConfig])
			if err != nil {
				return err
			}
			if cfg.ExecProviderConfig == nil || cfg.ExecProviderConfig.Command != "argocd-k8s-auth" {
				return fmt.Errorf("execProviderConfig = %+v", cfg.ExecProviderConfig)
			}
			writeFixtures(t, ctx, ns)
			return nil
		})
		testenv.Eventually(t, 20*time.Second, "status says unverified", func() error {
			got := registration(t, ctx, reg.Name)
			ready := meta.FindStatusCondition(got.Status.Conditions, fleetv1.ReadyCondition)
			if got.Status.Unverified != 1 || ready == nil || !strings.Contains(ready.Message, "could not verify") {
				return fmt.Errorf("unverified = %d, Ready = %+v", got.Status.Unverified, ready)
			}
			return nil
		})
		if f := failureOf(t, ctx, reg.Name, shellKey); f.Reason != fleetv1.ReasonExecNotAllowed {
			t.Fatalf("/bin/sh: %+v, want %s", f, fleetv1.ReasonExecNotAllowed)
		}
		expectNoSecret(t, ctx, argoKey(shellKey))
	})
	t.Run("ServiceAccountToken mode refuses exec plugins too", func(t *testing.T) {
		sa := &fleetv1.Registration{
			ObjectMeta: metav1.ObjectMeta{Name: "exec-sa"},
			Spec: fleetv1.RegistrationSpec{
				ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"exec": "test"}},
				ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: "argocd-exec-sa"},
				Credentials:     fleetv1.Credentials{ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-exec-sa"}},
			},
		}
		must(t, mgmt.EnsureNamespace(ctx, "argocd-exec-sa", nil))
		must(t, mgmt.Client.Create(ctx, sa))
		defer deleteRegistrationAndWait(t, ctx, sa.Name) // before the manager stops: a stop during a deletion is another test
		if f := failureOf(t, ctx, sa.Name, execKey); f.Reason != fleetv1.ReasonExecNotAllowed {
			t.Fatalf("%+v, want %s", f, fleetv1.ReasonExecNotAllowed)
		}
	})
}

// Turning TLS verification off (insecure-skip-tls-verify, or an http:// server) needs the Registration's
// allowInsecure, and then status and the Cluster's Event say so.
func TestInsecureTransportNeedsAllowInsecure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "argocd-insecure"
	must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	w, err := mgmt.AddWorkload(ctx, "fleet-insecure", "verified", testenv.ClusterOptions{Labels: map[string]string{"tls": "test"}})
	must(t, err)
	insecureKey := types.NamespacedName{Namespace: "fleet-insecure", Name: "skip-verify"}
	httpKey := types.NamespacedName{Namespace: "fleet-insecure", Name: "plain-http"}
	server := strings.Replace(w.Server(), "127.0.0.1", "localhost", 1)
	insecure := editKubeconfig(t, w.AdminKubeConfig, func(c *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) {
		c.Server, c.CertificateAuthorityData, c.InsecureSkipTLSVerify = server, nil, true
	})
	must(t, mgmt.PublishCluster(ctx, insecureKey.Namespace, insecureKey.Name, server, insecure, testenv.ClusterOptions{Labels: map[string]string{"tls": "test"}}))
	plain := editKubeconfig(t, w.AdminKubeConfig, func(c *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) {
		c.Server, c.CertificateAuthorityData = "http://127.0.0.1:1", nil
	})
	must(t, mgmt.PublishCluster(ctx, httpKey.Namespace, httpKey.Name, "http://127.0.0.1:1", plain, testenv.ClusterOptions{Labels: map[string]string{"tls": "test"}}))

	rm := startManager(t)
	defer rm.stop(t)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "insecure"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tls": "test"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: ns},
			Credentials:     fleetv1.Credentials{Mode: fleetv1.CredentialsKubeconfig},
		},
	}
	must(t, mgmt.Client.Create(ctx, reg))
	defer deleteRegistrationAndWait(t, ctx, reg.Name) // before the manager stops: a stop during a deletion is another test

	for _, k := range []types.NamespacedName{insecureKey, httpKey} {
		if f := failureOf(t, ctx, reg.Name, k); f.Reason != fleetv1.ReasonInsecureTransport {
			t.Fatalf("%s: %+v, want %s", k, f, fleetv1.ReasonInsecureTransport)
		}
		expectNoSecret(t, ctx, types.NamespacedName{Namespace: ns, Name: argoSecretName(k)})
	}
	expectEvent(t, ctx, insecureKey.Name, fleetv1.ReasonInsecureTransport)

	cur := registration(t, ctx, reg.Name)
	cur.Spec.Credentials.AllowInsecure = true
	must(t, mgmt.Client.Update(ctx, cur))
	testenv.Eventually(t, 20*time.Second, "registered, and said to be insecure", func() error {
		got := registration(t, ctx, reg.Name)
		ready := meta.FindStatusCondition(got.Status.Conditions, fleetv1.ReadyCondition)
		if got.Status.Registered != 2 || got.Status.Insecure != 1 || ready == nil || !strings.Contains(ready.Message, "without TLS verification") {
			return fmt.Errorf("registered %d, insecure %d, Ready %+v", got.Status.Registered, got.Status.Insecure, ready)
		}
		return nil
	})
	expectEventNote(t, ctx, insecureKey.Name, fleetv1.ReasonRegistered, "TLS verification is off")
	// The http:// server does not answer: allowed, it is merely unreachable.
	if f := failureOf(t, ctx, reg.Name, httpKey); f.Reason != fleetv1.ReasonClusterUnreachable {
		t.Fatalf("%+v, want %s", f, fleetv1.ReasonClusterUnreachable)
	}
}

// Names are injective by default and first come, first served: an ambiguous pair of Clusters gets two
// names, and a newcomer whose name is taken gets a Conflict that names only its own objects while the
// incumbent keeps its Secret. Between two Registrations the one created first keeps the Cluster, and
// its status says whom it outranks.
func TestNamesAreInjectiveAndFirstComeFirstServed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns, tenant = "argocd-names", "tenant-names"
	for _, n := range []string{ns, tenant} {
		must(t, mgmt.EnsureNamespace(ctx, n, nil))
	}
	w, err := mgmt.AddWorkload(ctx, "team", "b-prod", testenv.ClusterOptions{Labels: map[string]string{"names": "test"}})
	must(t, err)
	ambiguous := types.NamespacedName{Namespace: "team-b", Name: "prod"}
	alias := strings.Replace(w.Server(), "127.0.0.1", "localhost", 1)
	must(t, mgmt.PublishCluster(ctx, ambiguous.Namespace, ambiguous.Name, alias,
		editKubeconfig(t, w.AdminKubeConfig, func(c *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) { c.Server = alias }),
		testenv.ClusterOptions{Labels: map[string]string{"names": "test"}}))

	rm := startManager(t)
	defer rm.stop(t)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "names"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"names": "test"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: ns},
			Flux:            &fleetv1.FluxTarget{Namespaces: []string{tenant}},
			Credentials:     fleetv1.Credentials{Mode: fleetv1.CredentialsKubeconfig},
		},
	}
	must(t, mgmt.Client.Create(ctx, reg))
	defer deleteRegistrationAndWait(t, ctx, reg.Name) // before the manager stops: a stop during a deletion is another test

	t.Run("the default names cannot collide", func(t *testing.T) {
		expectReady(t, ctx, reg.Name, metav1.ConditionTrue, fleetv1.ReasonRegistered, 2, 2, 0)
		for key, name := range map[types.NamespacedName]string{{Namespace: "team", Name: "b-prod"}: "team.b-prod", ambiguous: "team-b.prod"} {
			s := &corev1.Secret{}
			must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: argoSecretName(key)}, s))
			if got := string(s.Data[argocd.KeyName]); got != name {
				t.Errorf("Argo CD name of %s = %q, want %q", key, got, name)
			}
			must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: tenant, Name: name + ".kubeconfig"}, s))
		}
	})

	t.Run("a newcomer never evicts the incumbent", func(t *testing.T) {
		cur := registration(t, ctx, reg.Name)
		cur.Spec.ArgoCD.NameTemplate = "{{ .Name }}"
		cur.Spec.Flux = nil
		must(t, mgmt.Client.Update(ctx, cur))
		incumbent := types.NamespacedName{Namespace: "zz-incumbent", Name: "edge"}
		w2, err := mgmt.AddWorkload(ctx, incumbent.Namespace, incumbent.Name, testenv.ClusterOptions{Labels: map[string]string{"names": "test"}})
		must(t, err)
		first := &corev1.Secret{}
		testenv.Eventually(t, 20*time.Second, "incumbent registered", func() error {
			return mgmt.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: argoSecretName(incumbent)}, first)
		})
		// The newcomer's key sorts first; it still does not take the name.
		newcomer := types.NamespacedName{Namespace: "aa-newcomer", Name: "edge"}
		newcomerServer := strings.Replace(w2.Server(), "127.0.0.1", "localhost", 1)
		must(t, mgmt.PublishCluster(ctx, newcomer.Namespace, newcomer.Name, newcomerServer,
			editKubeconfig(t, w2.AdminKubeConfig, func(c *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) { c.Server = newcomerServer }),
			testenv.ClusterOptions{Labels: map[string]string{"names": "test"}}))
		f := failureOf(t, ctx, reg.Name, newcomer)
		if f.Reason != fleetv1.ReasonConflict {
			t.Fatalf("newcomer: %+v, want %s", f, fleetv1.ReasonConflict)
		}
		if strings.Contains(f.Message, incumbent.Namespace) || strings.Contains(f.Message, "127.0.0.1") || strings.Contains(f.Message, argoSecretName(incumbent)) {
			t.Fatalf("the Conflict names another tenant's objects: %q", f.Message)
		}
		time.Sleep(2 * time.Second)
		still := &corev1.Secret{}
		must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: argoSecretName(incumbent)}, still))
		if still.UID != first.UID || string(still.Data[argocd.KeyName]) != "edge" {
			t.Fatalf("the incumbent's Secret was replaced or renamed")
		}
		expectNoSecret(t, ctx, types.NamespacedName{Namespace: ns, Name: argoSecretName(newcomer)})
	})

	t.Run("the first Registration keeps a Cluster and says whom it outranks", func(t *testing.T) {
		later := &fleetv1.Registration{
			ObjectMeta: metav1.ObjectMeta{Name: "aa-names-later"}, // sorts first, but came second
			Spec: fleetv1.RegistrationSpec{
				ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"names": "test"}},
				ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: ns},
				Credentials:     fleetv1.Credentials{Mode: fleetv1.CredentialsKubeconfig},
			},
		}
		must(t, mgmt.Client.Create(ctx, later))
		defer deleteRegistrationAndWait(t, ctx, later.Name) // before the manager stops: a stop during a deletion is another test
		if f := failureOf(t, ctx, later.Name, types.NamespacedName{Namespace: "team", Name: "b-prod"}); f.Reason != fleetv1.ReasonConflict {
			t.Fatalf("%+v, want %s", f, fleetv1.ReasonConflict)
		}
		testenv.Eventually(t, 20*time.Second, "winner's status", func() error {
			got := registration(t, ctx, reg.Name)
			if fmt.Sprint(got.Status.Conflicts) != "[aa-names-later]" {
				return fmt.Errorf("conflicts = %v", got.Status.Conflicts)
			}
			return nil
		})
	})
}

// One output that fails (a hand-made Secret of the same name in one Flux namespace) is reported with its
// namespace, and the other outputs are still written, rotated and pruned.
func TestOutputsAreIndependent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := mgmt.Client
	const argoNamespace = "argocd-independent"
	tenants := []string{"tenant-ind-a", "tenant-ind-b", "tenant-ind-c"}
	for _, n := range append([]string{argoNamespace}, tenants...) {
		must(t, mgmt.EnsureNamespace(ctx, n, nil))
	}
	key := types.NamespacedName{Namespace: "fleet-ind", Name: "edge"}
	_, err := mgmt.AddWorkload(ctx, key.Namespace, key.Name, testenv.ClusterOptions{Labels: map[string]string{"independent": "test"}})
	must(t, err)
	const fluxName = "edge-independent"
	handMade := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenants[0], Name: fluxName}, StringData: map[string]string{"keep": "me"}}
	must(t, c.Create(ctx, handMade))

	rm := startManager(t)
	defer rm.stop(t)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "independent"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"independent": "test"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: argoNamespace},
			Flux:            &fleetv1.FluxTarget{Namespaces: tenants, SecretNameTemplate: "{{ .Name }}-independent"},
			Credentials: fleetv1.Credentials{TokenTTL: &metav1.Duration{Duration: time.Hour},
				ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-independent"}},
		},
	}
	must(t, c.Create(ctx, reg))
	defer deleteRegistrationAndWait(t, ctx, reg.Name) // before the manager stops: a stop during a deletion is another test

	outputToken := func(k types.NamespacedName) (string, error) {
		s := &corev1.Secret{}
		if err := c.Get(ctx, k, s); err != nil {
			return "", err
		}
		if k.Namespace == argoNamespace {
			cfg, err := argocd.ParseConfig(s.Data[argocd.KeyConfig])
			return cfg.BearerToken, err
		}
		return flux.Token(s.Data[flux.KubeconfigKey]), nil
	}
	others := []types.NamespacedName{{Namespace: argoNamespace, Name: argoSecretName(key)},
		{Namespace: tenants[1], Name: fluxName}, {Namespace: tenants[2], Name: fluxName}}
	var first string
	testenv.Eventually(t, 20*time.Second, "the other outputs", func() error {
		for _, k := range others {
			tok, err := outputToken(k)
			if err != nil {
				return err
			}
			first = tok
		}
		return nil
	})
	f := failureOf(t, ctx, reg.Name, key)
	if f.Reason != fleetv1.ReasonConflict || !strings.Contains(f.Message, tenants[0]) {
		t.Fatalf("failure = %+v, want a Conflict naming %s", f, tenants[0])
	}

	rm.clock.Advance(pastRenewal)
	reconcileCluster(t, ctx, rm, key)
	testenv.Eventually(t, 20*time.Second, "the other outputs rotate", func() error {
		for _, k := range others {
			tok, err := outputToken(k)
			if err != nil {
				return err
			}
			if tok == first {
				return fmt.Errorf("%s still carries the first token", k)
			}
		}
		return nil
	})

	cur := registration(t, ctx, reg.Name)
	cur.Spec.Flux.Namespaces = tenants[:2]
	must(t, c.Update(ctx, cur))
	testenv.Eventually(t, 20*time.Second, "the dropped namespace pruned", func() error {
		err := c.Get(ctx, types.NamespacedName{Namespace: tenants[2], Name: fluxName}, &corev1.Secret{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	live := &corev1.Secret{}
	must(t, c.Get(ctx, client.ObjectKeyFromObject(handMade), live))
	if string(live.Data["keep"]) != "me" || len(live.Labels) != 0 {
		t.Fatal("the hand-made Secret was written")
	}
}

// Workload API servers are bounded: a denied address is refused before any connection, a response
// past the cap is ClusterUnreachable saying it was too large, and a reconcile has a deadline.
func TestWorkloadCallsAreBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "argocd-bounded"
	must(t, mgmt.EnsureNamespace(ctx, ns, nil))

	var served atomic.Int64
	endless := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		chunk := []byte(strings.Repeat(" ", 64<<10))
		for i := 0; i < 1<<14 && r.Context().Err() == nil; i++ { // at most 1 GiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
			served.Add(int64(len(chunk)))
		}
	}))
	defer endless.Close()
	slow := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	}))
	defer slow.Close()
	kubeconfigFor := func(srv *httptest.Server, server string) []byte {
		ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		out, err := clientcmd.Write(clientcmdapi.Config{
			Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: server, CertificateAuthorityData: ca}},
			AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": {Token: "t"}},
			Contexts:       map[string]*clientcmdapi.Context{"c": {Cluster: "c", AuthInfo: "u"}},
			CurrentContext: "c",
		})
		must(t, err)
		return out
	}
	labels := testenv.ClusterOptions{Labels: map[string]string{"bounded": "test"}}
	big := types.NamespacedName{Namespace: "fleet-bounded", Name: "big"}
	hang := types.NamespacedName{Namespace: "fleet-bounded", Name: "hang"}
	denied := types.NamespacedName{Namespace: "fleet-bounded", Name: "denied"}
	must(t, mgmt.PublishCluster(ctx, big.Namespace, big.Name, endless.URL, kubeconfigFor(endless, endless.URL), labels))
	must(t, mgmt.PublishCluster(ctx, hang.Namespace, hang.Name, slow.URL, kubeconfigFor(slow, slow.URL), labels))
	deniedURL := strings.Replace(slow.URL, "127.0.0.1", "127.0.0.3", 1)
	must(t, mgmt.PublishCluster(ctx, denied.Namespace, denied.Name, deniedURL, kubeconfigFor(slow, deniedURL), labels))

	rm := startManagerWith(t, func(o *Options) {
		o.ProbeTimeout = 30 * time.Second
		o.ReconcileTimeout = 2 * time.Second
		o.DeniedCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
	})
	defer rm.stop(t)
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "bounded"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: labels.Labels},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: ns},
			Credentials:     fleetv1.Credentials{Mode: fleetv1.CredentialsKubeconfig},
		},
	}
	start := time.Now()
	must(t, mgmt.Client.Create(ctx, reg))
	defer deleteRegistrationAndWait(t, ctx, reg.Name) // before the manager stops: a stop during a deletion is another test

	if f := failureOf(t, ctx, reg.Name, denied); f.Reason != fleetv1.ReasonDeniedAddress {
		t.Fatalf("denied: %+v, want %s", f, fleetv1.ReasonDeniedAddress)
	}
	if f := failureOf(t, ctx, reg.Name, big); f.Reason != fleetv1.ReasonClusterUnreachable || !strings.Contains(f.Message, "too large") {
		t.Fatalf("big: %+v, want %s saying the response was too large", f, fleetv1.ReasonClusterUnreachable)
	}
	if n := served.Load(); n > 64<<20 {
		t.Fatalf("the controller read %d MiB of one response", n>>20)
	}
	if f := failureOf(t, ctx, reg.Name, hang); f.Reason != fleetv1.ReasonClusterUnreachable {
		t.Fatalf("hang: %+v, want %s", f, fleetv1.ReasonClusterUnreachable)
	}
	// The probe timeout is 30 s; only the reconcile deadline ends the hanging call this early.
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("the hanging cluster was reported after %s", took)
	}
}
