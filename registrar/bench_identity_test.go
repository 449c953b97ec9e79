package registrar

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/fleetbridge/fleetbridge/internal/flux"
	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// The benchmarks' registrar (and the floor's plain client) call the management server as a deployed
// registrar does: as its ServiceAccount, with a bound token, under the ClusterRole its RBAC markers
// generate (config/rbac/role.yaml). envtest's admin user would instead authenticate with a client
// certificate, whose chain the API server verifies again on every request, and be authorized as
// system:masters without RBAC, neither of which a deployment pays or skips.
var benchIdentity struct {
	once sync.Once
	cfg  *rest.Config
	err  error
}

const (
	benchIdentityNamespace = "fleetbridge-system"
	benchIdentityName      = "fleetbridge-bench"
)

// benchManagementConfig is a client config for the management server as the registrar's ServiceAccount.
func benchManagementConfig(tb testing.TB) *rest.Config {
	tb.Helper()
	benchIdentity.once.Do(func() { benchIdentity.cfg, benchIdentity.err = newBenchIdentity(context.Background()) })
	if benchIdentity.err != nil {
		tb.Fatalf("the registrar's ServiceAccount: %v", benchIdentity.err)
	}
	return rest.CopyConfig(benchIdentity.cfg)
}

func newBenchIdentity(ctx context.Context) (*rest.Config, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(raw, role); err != nil {
		return nil, err
	}
	role.Name = benchIdentityName
	c := mgmt.Client
	if err := mgmt.EnsureNamespace(ctx, benchIdentityNamespace, nil); err != nil {
		return nil, err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: benchIdentityNamespace, Name: benchIdentityName}}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: benchIdentityName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: sa.Name}},
	}
	for _, obj := range []client.Object{role, sa, binding} {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	kube, err := kubernetes.NewForConfig(mgmt.Config)
	if err != nil {
		return nil, err
	}
	tr, err := kube.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(4 * 3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            mgmt.Config.Host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: mgmt.Config.CAData, ServerName: mgmt.Config.ServerName},
	}, nil
}

// benchManagementKubeconfig is benchManagementConfig as a kubeconfig file, for the binary.
func benchManagementKubeconfig(tb testing.TB) []byte {
	tb.Helper()
	cfg := benchManagementConfig(tb)
	out, err := flux.Kubeconfig(&kubeconfig.Credentials{Server: cfg.Host, CAData: cfg.CAData, ServerName: cfg.ServerName}, cfg.BearerToken)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
