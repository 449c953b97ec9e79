package testenv

import (
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Management is the management cluster: a real kube-apiserver with the CAPI and fleetbridge CRDs.
type Management struct {
	Env    *envtest.Environment
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme

	workloads []*Workload
}

// Options tune StartManagement.
type Options struct {
	// ExtraCRDPaths are CRD files or directories to install besides fleetbridge's and Cluster API's.
	ExtraCRDPaths []string
}

// StartManagement starts the management API server and installs the CRDs.
func StartManagement(opts Options) (*Management, error) {
	assets, err := BinaryAssetsDir()
	if err != nil {
		return nil, err
	}
	paths, err := CRDPaths()
	if err != nil {
		return nil, err
	}
	paths = append(paths, opts.ExtraCRDPaths...)
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        paths,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("testenv: start management API server: %w", err)
	}
	scheme := NewScheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Management{Env: env, Config: cfg, Client: c, Scheme: scheme}, nil
}

// Stop stops every workload server this Management started, then the management server.
func (m *Management) Stop() error {
	var first error
	for _, w := range m.workloads {
		if err := w.Stop(); err != nil && first == nil {
			first = err
		}
	}
	if err := m.Env.Stop(); err != nil && first == nil {
		first = err
	}
	return first
}

// KubeConfig is an admin kubeconfig for the management server (for processes such as the built binary).
func (m *Management) KubeConfig() ([]byte, error) {
	user, err := m.Env.ControlPlane.AddUser(envtest.User{Name: "test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	return user.KubeConfig()
}

// RunMain is a test package's TestMain body: it starts the shared management server into *into, runs
// the tests and stops every server. Call it as os.Exit(testenv.RunMain(m, opts, &mgmt)).
func RunMain(m interface{ Run() int }, opts Options, into **Management) int {
	mgmt, err := StartManagement(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*into = mgmt
	code := m.Run()
	if err := mgmt.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return code
}
