package registrar

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// leftoversArgoNS is where the Registrations of TestNoWorkloadLeftovers write, apart from the argocd
// namespace whose exact content other tests check.
const leftoversArgoNS = "argocd-leftovers"

// TestNoWorkloadLeftovers changes, one subtest per path, what a Registration needs on a workload cluster
// and checks each time that the cluster then holds exactly the fleetbridge ServiceAccounts and bindings
// the current spec needs: nothing of an old name, namespace, role, namespace list or mode, and nothing
// once the Registration is gone, even when a reconcile races its deletion. Each subtest has its own
// workload cluster, so a failure does not spill into the next.
func TestNoWorkloadLeftovers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	must(t, mgmt.EnsureNamespace(ctx, leftoversArgoNS, nil))
	holds := &registerHolds{armed: map[string]*registerHold{}}
	lists := &accessListCounter{byHost: map[string][]string{}}
	rm := startManagerIn(t, Namespaces{}, func(o *Options) {
		o.beforeRegister = holds.wait
		inner := o.WrapWorkloadTransport
		o.WrapWorkloadTransport = func(rt http.RoundTripper) http.RoundTripper { return lists.wrap(inner(rt)) }
	})
	defer rm.stop(t)

	t.Run("ServiceAccount renamed", func(t *testing.T) {
		w, key := leftoversCluster(t, ctx, "sa-renamed")
		reg := leftoversRegistration("leftovers-sa-renamed", "sa-renamed", func(c *fleetv1.Credentials) {
			c.ServiceAccount = fleetv1.ServiceAccountReference{Namespace: "default", Name: "agent-a"}
		})
		must(t, mgmt.Client.Create(ctx, reg))
		expectWorkloadAccess(t, ctx, w, saDesc("default", "agent-a"), crbDesc("agent-a", "cluster-admin", "default", "agent-a"))

		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.ServiceAccount.Name = "agent-b" })
		expectWorkloadAccess(t, ctx, w, saDesc("default", "agent-b"), crbDesc("agent-b", "cluster-admin", "default", "agent-b"))
		expectLeftoversTokenWorks(t, ctx, key)

		deleteRegistrationAndWait(t, ctx, reg.Name)
		expectWorkloadAccess(t, ctx, w)
	})

	t.Run("ServiceAccount namespace changed", func(t *testing.T) {
		w, key := leftoversCluster(t, ctx, "sa-namespace", "fleet-agents")
		reg := leftoversRegistration("leftovers-sa-namespace", "sa-namespace", func(c *fleetv1.Credentials) {
			c.ServiceAccount = fleetv1.ServiceAccountReference{Namespace: "default", Name: "agent"}
		})
		must(t, mgmt.Client.Create(ctx, reg))
		expectWorkloadAccess(t, ctx, w, saDesc("default", "agent"), crbDesc("agent", "cluster-admin", "default", "agent"))

		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.ServiceAccount.Namespace = "fleet-agents" })
		expectWorkloadAccess(t, ctx, w, saDesc("fleet-agents", "agent"), crbDesc("agent", "cluster-admin", "fleet-agents", "agent"))
		expectLeftoversTokenWorks(t, ctx, key)

		deleteRegistrationAndWait(t, ctx, reg.Name)
		expectWorkloadAccess(t, ctx, w)
	})

	t.Run("ClusterRole changed", func(t *testing.T) {
		w, _ := leftoversCluster(t, ctx, "role")
		must(t, w.Client.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "leftovers-reader"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}}}))
		reg := leftoversRegistration("leftovers-role", "role", func(c *fleetv1.Credentials) {
			c.ServiceAccount = fleetv1.ServiceAccountReference{Namespace: "default", Name: "agent"}
		})
		must(t, mgmt.Client.Create(ctx, reg))
		expectWorkloadAccess(t, ctx, w, saDesc("default", "agent"), crbDesc("agent", "cluster-admin", "default", "agent"))

		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.ClusterRole = "leftovers-reader" })
		expectWorkloadAccess(t, ctx, w, saDesc("default", "agent"), crbDesc("agent", "leftovers-reader", "default", "agent"))

		// A role the workload cluster does not have fails the cluster; the grant of the role it replaces
		// must not outlive the change.
		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.ClusterRole = "leftovers-missing" })
		expectWorkloadAccess(t, ctx, w, saDesc("default", "agent"))

		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.ClusterRole = "cluster-admin" })
		expectWorkloadAccess(t, ctx, w, saDesc("default", "agent"), crbDesc("agent", "cluster-admin", "default", "agent"))

		deleteRegistrationAndWait(t, ctx, reg.Name)
		expectWorkloadAccess(t, ctx, w)
	})

	t.Run("namespaces changed", func(t *testing.T) {
		w, _ := leftoversCluster(t, ctx, "namespaces", "apps", "other")
		reg := leftoversRegistration("leftovers-namespaces", "namespaces", func(c *fleetv1.Credentials) {
			c.ServiceAccount = fleetv1.ServiceAccountReference{Namespace: "default", Name: "agent"}
		})
		must(t, mgmt.Client.Create(ctx, reg))
		sa := saDesc("default", "agent")
		expectWorkloadAccess(t, ctx, w, sa, crbDesc("agent", "cluster-admin", "default", "agent"))

		steps := []struct {
			namespaces []string
			want       []string
		}{
			{[]string{"apps"}, []string{sa, rbDesc("apps", "agent", "cluster-admin", "default", "agent")}},
			{[]string{"apps", "other"}, []string{sa, rbDesc("apps", "agent", "cluster-admin", "default", "agent"), rbDesc("other", "agent", "cluster-admin", "default", "agent")}},
			{[]string{"other"}, []string{sa, rbDesc("other", "agent", "cluster-admin", "default", "agent")}},
			// A namespace the workload cluster does not have fails the cluster; the grant in the namespace
			// it replaces must not outlive the change.
			{[]string{"missing"}, []string{sa}},
			{[]string{"apps"}, []string{sa, rbDesc("apps", "agent", "cluster-admin", "default", "agent")}},
			{nil, []string{sa, crbDesc("agent", "cluster-admin", "default", "agent")}},
		}
		for _, step := range steps {
			updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.ArgoCD.Namespaces = step.namespaces })
			expectWorkloadAccess(t, ctx, w, step.want...)
		}

		deleteRegistrationAndWait(t, ctx, reg.Name)
		expectWorkloadAccess(t, ctx, w)
	})

	t.Run("mode switched to Kubeconfig", func(t *testing.T) {
		w, key := leftoversCluster(t, ctx, "to-kubeconfig")
		reg := leftoversRegistration("leftovers-to-kubeconfig", "to-kubeconfig", func(c *fleetv1.Credentials) {
			c.ServiceAccount = fleetv1.ServiceAccountReference{Namespace: "default", Name: "agent"}
		})
		must(t, mgmt.Client.Create(ctx, reg))
		access := []string{saDesc("default", "agent"), crbDesc("agent", "cluster-admin", "default", "agent")}
		expectWorkloadAccess(t, ctx, w, access...)
		withToken := waitLeftoversSecret(t, ctx, key, true)

		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.Mode = fleetv1.CredentialsKubeconfig })
		waitLeftoversSecret(t, ctx, key, false)
		expectWorkloadAccess(t, ctx, w)
		testenv.Eventually(t, 10*time.Second, "the token of the ServiceAccount mode is revoked", func() error {
			return expectTokenFails(ctx, withToken)
		})

		// Back and forth: each switch to Kubeconfig removes what the ServiceAccountToken mode created.
		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.Mode = fleetv1.CredentialsServiceAccountToken })
		expectWorkloadAccess(t, ctx, w, access...)
		waitLeftoversSecret(t, ctx, key, true)
		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.Mode = fleetv1.CredentialsKubeconfig })
		waitLeftoversSecret(t, ctx, key, false)
		expectWorkloadAccess(t, ctx, w)

		deleteRegistrationAndWait(t, ctx, reg.Name)
		expectWorkloadAccess(t, ctx, w)
	})

	t.Run("mode switched to Kubeconfig, then deleted", func(t *testing.T) {
		w, _ := leftoversCluster(t, ctx, "kubeconfig-deleted")
		reg := leftoversRegistration("leftovers-kubeconfig-deleted", "kubeconfig-deleted", nil)
		must(t, mgmt.Client.Create(ctx, reg))
		expectWorkloadAccess(t, ctx, w, saDesc("kube-system", "fleetbridge-argocd"),
			crbDesc("fleetbridge-argocd", "cluster-admin", "kube-system", "fleetbridge-argocd"))

		// The Cluster controller is held before it registers, so only the deletion's own cleanup can
		// remove what the ServiceAccountToken mode created.
		hold := holds.arm(t, reg.Name)
		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.Mode = fleetv1.CredentialsKubeconfig })
		hold.waitHeld(t)
		deleteRegistrationAndWait(t, ctx, reg.Name)
		expectWorkloadAccess(t, ctx, w)
		hold.release()
		expectWorkloadAccessStays(t, ctx, w, 3*time.Second)
	})

	t.Run("deletion racing a reconcile", func(t *testing.T) {
		w, key := leftoversCluster(t, ctx, "race")
		reg := leftoversRegistration("leftovers-race", "race", nil)
		must(t, mgmt.Client.Create(ctx, reg))
		expectWorkloadAccess(t, ctx, w, saDesc("kube-system", "fleetbridge-argocd"),
			crbDesc("fleetbridge-argocd", "cluster-admin", "kube-system", "fleetbridge-argocd"))
		waitLeftoversSecret(t, ctx, key, true)

		// A reconcile reads the Registration, then waits while the Registration is deleted and its
		// cleanup runs to the end; it then carries on with what it read.
		hold := holds.arm(t, reg.Name)
		sent := nudgeCluster(t, ctx, key)
		hold.waitHeld(t)
		deleteRegistrationAndWait(t, ctx, reg.Name)
		expectWorkloadAccess(t, ctx, w)
		hold.release()
		testenv.Eventually(t, 30*time.Second, "the held reconcile finishes", func() error {
			if !rm.reconciles.since(key, sent) {
				return fmt.Errorf("it has not")
			}
			return nil
		})
		expectWorkloadAccessStays(t, ctx, w, 3*time.Second)
	})

	t.Run("Kubeconfig mode from the start, after an earlier process", func(t *testing.T) {
		w, key := leftoversCluster(t, ctx, "kubeconfig-start")
		// What an earlier process left: the Registration was in ServiceAccountToken mode then.
		earlier := workloadAccess{reg: leftoversRegistration("leftovers-kubeconfig-start", "kubeconfig-start", nil), cluster: key}
		createAccessOf(t, ctx, w, earlier)
		expectWorkloadAccess(t, ctx, w, saDesc("kube-system", "fleetbridge-argocd"),
			crbDesc("fleetbridge-argocd", "cluster-admin", "kube-system", "fleetbridge-argocd"))

		reg := leftoversRegistration("leftovers-kubeconfig-start", "kubeconfig-start", func(c *fleetv1.Credentials) {
			c.Mode = fleetv1.CredentialsKubeconfig
		})
		must(t, mgmt.Client.Create(ctx, reg))
		waitLeftoversSecret(t, ctx, key, false)
		reconcileCluster(t, ctx, rm, key) // the check may wait for a second reconcile (ensureNone)
		expectWorkloadAccess(t, ctx, w)
		expectNoListsOnReconcile(t, ctx, rm, lists, w, key)

		deleteRegistrationAndWait(t, ctx, reg.Name)
		expectWorkloadAccess(t, ctx, w)
	})

	t.Run("a steady fleet lists nothing on workload clusters", func(t *testing.T) {
		w, key := leftoversCluster(t, ctx, "steady")
		reg := leftoversRegistration("leftovers-steady", "steady", nil)
		must(t, mgmt.Client.Create(ctx, reg))
		expectWorkloadAccess(t, ctx, w, saDesc("kube-system", "fleetbridge-argocd"),
			crbDesc("fleetbridge-argocd", "cluster-admin", "kube-system", "fleetbridge-argocd"))
		waitLeftoversSecret(t, ctx, key, true)
		expectNoListsOnReconcile(t, ctx, rm, lists, w, key)

		updateRegistration(t, ctx, reg.Name, func(r *fleetv1.Registration) { r.Spec.Credentials.Mode = fleetv1.CredentialsKubeconfig })
		waitLeftoversSecret(t, ctx, key, false)
		expectWorkloadAccess(t, ctx, w)
		expectNoListsOnReconcile(t, ctx, rm, lists, w, key)

		deleteRegistrationAndWait(t, ctx, reg.Name)
	})
}

// leftoversCluster starts a workload cluster with namespaces, published as CAPI Cluster
// leftovers/<name> with the label leftovers=<name>, and stops it when the subtest ends.
func leftoversCluster(t *testing.T, ctx context.Context, name string, namespaces ...string) (*testenv.Workload, types.NamespacedName) {
	t.Helper()
	w, err := mgmt.AddWorkload(ctx, "leftovers", name, testenv.ClusterOptions{Labels: map[string]string{"leftovers": name}})
	must(t, err)
	key := types.NamespacedName{Namespace: "leftovers", Name: name}
	t.Cleanup(func() {
		_ = mgmt.Client.Delete(context.Background(), &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
		_ = w.Stop()
	})
	for _, ns := range namespaces {
		must(t, w.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	return w, key
}

// createAccessOf creates on a workload cluster the ServiceAccount and ClusterRoleBinding ensure would
// create for access.
func createAccessOf(t *testing.T, ctx context.Context, w *testenv.Workload, access workloadAccess) {
	t.Helper()
	ns, name := serviceAccount(access.reg)
	must(t, w.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: access.labels()}}))
	must(t, w.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: access.bindingName(), Labels: access.labels()},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole(access.reg)},
	}))
}

// leftoversRegistration is a Registration selecting the Cluster leftoversCluster published as name, in
// ServiceAccountToken mode, with credentials adjusted by creds.
func leftoversRegistration(registration, cluster string, creds func(*fleetv1.Credentials)) *fleetv1.Registration {
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: registration},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"leftovers": cluster}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: leftoversArgoNS},
			Credentials:     fleetv1.Credentials{TokenTTL: &metav1.Duration{Duration: time.Hour}},
		},
	}
	if creds != nil {
		creds(&reg.Spec.Credentials)
	}
	return reg
}

func updateRegistration(t *testing.T, ctx context.Context, name string, change func(*fleetv1.Registration)) {
	t.Helper()
	base := registration(t, ctx, name)
	patched := base.DeepCopy()
	change(patched)
	must(t, mgmt.Client.Patch(ctx, patched, client.MergeFrom(base)))
}

// deleteRegistrationAndWait deletes a Registration and waits until its cleanup released the finalizer.
func deleteRegistrationAndWait(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	must(t, client.IgnoreNotFound(mgmt.Client.Delete(ctx, &fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: name}})))
	testenv.Eventually(t, 20*time.Second, "Registration "+name+" gone", func() error {
		if err := mgmt.Client.Get(ctx, types.NamespacedName{Name: name}, &fleetv1.Registration{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
}

// waitLeftoversSecret waits until the Cluster's Argo CD Secret authenticates with a bearer token
// (withToken) or with the CAPI kubeconfig's client certificate, and returns it.
func waitLeftoversSecret(t *testing.T, ctx context.Context, key types.NamespacedName, withToken bool) *corev1.Secret {
	t.Helper()
	var out *corev1.Secret
	testenv.Eventually(t, 20*time.Second, fmt.Sprintf("Argo CD Secret of %s (token: %v)", key, withToken), func() error {
		s := &corev1.Secret{}
		if err := mgmt.Client.Get(ctx, types.NamespacedName{Namespace: leftoversArgoNS, Name: argoSecretName(key)}, s); err != nil {
			return err
		}
		cfg, err := argocd.ParseConfig(s.Data[argocd.KeyConfig])
		if err != nil {
			return err
		}
		if hasToken := cfg.BearerToken != ""; hasToken != withToken {
			return fmt.Errorf("bearer token present: %v", hasToken)
		}
		if !withToken && len(cfg.TLSClientConfig.CertData) == 0 {
			return fmt.Errorf("no client certificate")
		}
		out = s
		return nil
	})
	return out
}

// expectLeftoversTokenWorks waits until the token in the Cluster's Argo CD Secret lists namespaces.
func expectLeftoversTokenWorks(t *testing.T, ctx context.Context, key types.NamespacedName) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, "the registered token works", func() error {
		s := &corev1.Secret{}
		if err := mgmt.Client.Get(ctx, types.NamespacedName{Namespace: leftoversArgoNS, Name: argoSecretName(key)}, s); err != nil {
			return err
		}
		return tokenWorks(ctx, s)
	})
}

func saDesc(namespace, name string) string {
	return "ServiceAccount " + namespace + "/" + name
}

func crbDesc(saName, role, subjectNS, subjectName string) string {
	return fmt.Sprintf("ClusterRoleBinding fleetbridge:%s -> %s for %s/%s", saName, role, subjectNS, subjectName)
}

func rbDesc(namespace, saName, role, subjectNS, subjectName string) string {
	return fmt.Sprintf("RoleBinding %s/fleetbridge:%s -> %s for %s/%s", namespace, saName, role, subjectNS, subjectName)
}

func bindingDesc(kind string, obj metav1.Object, ref rbacv1.RoleRef, subjects []rbacv1.Subject) string {
	name := obj.GetName()
	if obj.GetNamespace() != "" {
		name = obj.GetNamespace() + "/" + name
	}
	var who []string
	for _, s := range subjects {
		who = append(who, s.Namespace+"/"+s.Name)
	}
	return fmt.Sprintf("%s %s -> %s for %s", kind, name, ref.Name, strings.Join(who, ","))
}

// workloadAccessOf describes, sorted, every ServiceAccount, RoleBinding and ClusterRoleBinding on a
// workload cluster that carries fleetbridge's registration label.
func workloadAccessOf(ctx context.Context, w *testenv.Workload) ([]string, error) {
	sel := client.MatchingLabelsSelector{Selector: owned.Selector()}
	sas := &corev1.ServiceAccountList{}
	rbs := &rbacv1.RoleBindingList{}
	crbs := &rbacv1.ClusterRoleBindingList{}
	for _, list := range []client.ObjectList{sas, rbs, crbs} {
		if err := w.Client.List(ctx, list, sel); err != nil {
			return nil, err
		}
	}
	var got []string
	for _, o := range sas.Items {
		got = append(got, saDesc(o.Namespace, o.Name))
	}
	for i := range rbs.Items {
		got = append(got, bindingDesc("RoleBinding", &rbs.Items[i], rbs.Items[i].RoleRef, rbs.Items[i].Subjects))
	}
	for i := range crbs.Items {
		got = append(got, bindingDesc("ClusterRoleBinding", &crbs.Items[i], crbs.Items[i].RoleRef, crbs.Items[i].Subjects))
	}
	sort.Strings(got)
	return got, nil
}

func sameAccess(got, want []string) error {
	want = append([]string(nil), want...)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("fleetbridge objects on the workload cluster:\n  got  %q\n  want %q", got, want)
	}
	return nil
}

// expectWorkloadAccess waits until the workload cluster holds exactly the described fleetbridge objects.
func expectWorkloadAccess(t *testing.T, ctx context.Context, w *testenv.Workload, want ...string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, "workload access of "+w.Name, func() error {
		got, err := workloadAccessOf(ctx, w)
		if err != nil {
			return err
		}
		return sameAccess(got, want)
	})
}

// expectWorkloadAccessStays checks for a while that the workload cluster holds no fleetbridge object.
func expectWorkloadAccessStays(t *testing.T, ctx context.Context, w *testenv.Workload, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got, err := workloadAccessOf(ctx, w)
		must(t, err)
		if err := sameAccess(got, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// expectNoListsOnReconcile reconciles a registered Cluster ten times once its Argo CD Secret settled and
// checks that none of the reconciles listed ServiceAccounts or bindings on its workload cluster.
func expectNoListsOnReconcile(t *testing.T, ctx context.Context, rm *runningManager, lists *accessListCounter, w *testenv.Workload, key types.NamespacedName) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "cache settles", func() error {
		live := &corev1.Secret{}
		if err := mgmt.Client.Get(ctx, types.NamespacedName{Namespace: leftoversArgoNS, Name: argoSecretName(key)}, live); err != nil {
			return err
		}
		cached := &corev1.Secret{}
		if err := rm.reg.Clusters.Client.Get(ctx, client.ObjectKeyFromObject(live), cached); err != nil {
			return err
		}
		if cached.ResourceVersion != live.ResourceVersion {
			return fmt.Errorf("cache at %s, server at %s", cached.ResourceVersion, live.ResourceVersion)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // and the reconcile that event triggered has finished
	// The first reconcile in a process leaves the check for leftovers to the next one (ensure).
	reconcileCluster(t, ctx, rm, key)
	u, err := url.Parse(w.Server())
	must(t, err)
	lists.reset()
	for i := 0; i < 10; i++ {
		reconcileCluster(t, ctx, rm, key)
	}
	if got := lists.of(u.Host); len(got) != 0 {
		t.Errorf("10 reconciles of a registered Cluster listed %d times on its workload cluster: %s", len(got), strings.Join(got, ", "))
	}
}

// registerHolds holds the Cluster controller's register path (Options.beforeRegister) for armed
// Registrations.
type registerHolds struct {
	mu    sync.Mutex
	armed map[string]*registerHold
}

type registerHold struct {
	heldOnce, releaseOnce sync.Once
	held, released        chan struct{}
}

// arm holds every register for a Registration from now until release (or the end of the subtest).
func (h *registerHolds) arm(t *testing.T, registration string) *registerHold {
	hold := &registerHold{held: make(chan struct{}), released: make(chan struct{})}
	h.mu.Lock()
	h.armed[registration] = hold
	h.mu.Unlock()
	t.Cleanup(hold.release)
	return hold
}

func (h *registerHolds) wait(ctx context.Context, registration string, _ types.NamespacedName) {
	h.mu.Lock()
	hold := h.armed[registration]
	h.mu.Unlock()
	if hold == nil {
		return
	}
	hold.heldOnce.Do(func() { close(hold.held) })
	select {
	case <-hold.released:
	case <-ctx.Done():
	}
}

// waitHeld waits until a register for the Registration is held.
func (hold *registerHold) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-hold.held:
	case <-time.After(20 * time.Second):
		t.Fatal("no reconcile reached the register path")
	}
}

func (hold *registerHold) release() { hold.releaseOnce.Do(func() { close(hold.released) }) }

// accessListCounter records, per workload host, the lists of ServiceAccounts and bindings.
type accessListCounter struct {
	mu     sync.Mutex
	byHost map[string][]string
}

func (c *accessListCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		switch path.Base(req.URL.Path) {
		case "serviceaccounts", "rolebindings", "clusterrolebindings":
			if req.Method == http.MethodGet {
				c.mu.Lock()
				c.byHost[req.URL.Host] = append(c.byHost[req.URL.Host], req.URL.Path)
				c.mu.Unlock()
			}
		}
		return rt.RoundTrip(req)
	})
}

func (c *accessListCounter) reset() {
	c.mu.Lock()
	c.byHost = map[string][]string{}
	c.mu.Unlock()
}

func (c *accessListCounter) of(host string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.byHost[host]...)
}
