package registrar

import (
	"context"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// In Kubeconfig mode the first look of a process lists nothing on the workload cluster unless a Secret
// of the Registration still carries a token; the check then runs at the next look, removes what an
// earlier ServiceAccountToken mode left, and is not repeated.
func TestEnsureNoneChecksOncePerProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := testenv.StartWorkload("ensure-none", "w")
	must(t, err)
	defer func() { _ = w.Stop() }()
	key := types.NamespacedName{Namespace: "ensure-none", Name: "w"}
	lists := &accessListCounter{byHost: map[string][]string{}}
	cfg := rest.CopyConfig(w.Config)
	cfg.Wrap(lists.wrap)
	kube, err := newWorkloadClientset(cfg)
	must(t, err)
	u, err := url.Parse(w.Server())
	must(t, err)
	reg := leftoversRegistration("ensure-none", "w", func(c *fleetv1.Credentials) { c.Mode = fleetv1.CredentialsKubeconfig })
	access := workloadAccess{kube: kube, reg: reg, cluster: key, gate: newWorkloadGate(nil)}
	leftover := []string{saDesc("kube-system", "fleetbridge-argocd"),
		crbDesc("fleetbridge-argocd", "cluster-admin", "kube-system", "fleetbridge-argocd")}
	createAccessOf(t, ctx, w, access)

	access.ensureNone(ctx, nil)
	if got := lists.of(u.Host); len(got) != 0 {
		t.Fatalf("the first look listed %v", got)
	}
	expectWorkloadAccess(t, ctx, w, leftover...)
	access.ensureNone(ctx, nil)
	if got := lists.of(u.Host); len(got) != 3 {
		t.Fatalf("the check listed %v, want ServiceAccounts, RoleBindings and ClusterRoleBindings once each", got)
	}
	expectWorkloadAccess(t, ctx, w)
	lists.reset()
	for i := 0; i < 5; i++ {
		access.ensureNone(ctx, nil)
	}
	if got := lists.of(u.Host); len(got) != 0 {
		t.Fatalf("looks after the check listed %v", got)
	}

	// A Secret written in ServiceAccountToken mode: the first look of another process checks at once.
	createAccessOf(t, ctx, w, access)
	expectWorkloadAccess(t, ctx, w, leftover...)
	withToken := corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Labels:      owned.Labels(reg.Name, key, owned.OutputArgoCD),
		Annotations: map[string]string{owned.AnnotationTokenExpiresAt: time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
	}}
	restarted := access
	restarted.gate = newWorkloadGate(nil)
	restarted.ensureNone(ctx, []corev1.Secret{withToken})
	expectWorkloadAccess(t, ctx, w)
}
