package registrar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
	"github.com/fleetbridge/fleetbridge/internal/workloadhttp"
)

// endpoint is what the controller knows about reaching one workload cluster, built from one version of
// its CAPI kubeconfig Secret. The credentials live only here, in memory.
type endpoint struct {
	secretVersion string
	creds         *kubeconfig.Credentials
	// config is the config of the endpoint's clients: the kubeconfig's credentials, or none (only to
	// probe /version) when it has no credential the controller may use itself (exec-only).
	config        *rest.Config
	authenticated bool
}

// connection is the clients of one use (a reconcile, a cleanup) of an endpoint; close releases them.
// They are built for each use and dropped after it: each workload cluster is called once a resync, so
// TLS connections, transports and parsed certificates kept between reconciles only cost memory (about
// 25 kB per Cluster, most of the registrar's heap for a large fleet).
type connection struct {
	creds *kubeconfig.Credentials
	// kube is client when the endpoint is authenticated, and nil when the kubeconfig has no credential
	// the controller may use itself (exec-only): client then only probes /version, anonymously.
	kube   workloadClient
	client *workloadClientset
}

// close closes the connection's TCP connections (its requests are done).
func (conn *connection) close() {
	if conn != nil && conn.client != nil && conn.client.transport != nil {
		conn.client.transport.CloseIdleConnections()
	}
}

// workloadClient is the part of the Kubernetes API the controller calls on a workload cluster.
// *kubernetes.Clientset implements it too.
type workloadClient interface {
	CoreV1() corev1client.CoreV1Interface
	RbacV1() rbacv1client.RbacV1Interface
	AuthenticationV1() authenticationv1client.AuthenticationV1Interface
	Discovery() discovery.DiscoveryInterface
}

// workloadClientset holds only the API groups the controller calls. A full kubernetes.Clientset
// builds a REST client for each of its ~50 API groups: about 25 kB per Cluster, a third of the
// registrar's heap for a 1,000-Cluster fleet.
type workloadClientset struct {
	// transport is the clients' own HTTP transport, under client-go's (and tests') wrappers.
	transport interface{ CloseIdleConnections() }
	core      *corev1client.CoreV1Client
	rbac      *rbacv1client.RbacV1Client
	authn     *authenticationv1client.AuthenticationV1Client
	discovery *discovery.DiscoveryClient
}

func (c *workloadClientset) CoreV1() corev1client.CoreV1Interface    { return c.core }
func (c *workloadClientset) RbacV1() rbacv1client.RbacV1Interface    { return c.rbac }
func (c *workloadClientset) Discovery() discovery.DiscoveryInterface { return c.discovery }
func (c *workloadClientset) AuthenticationV1() authenticationv1client.AuthenticationV1Interface {
	return c.authn
}

// newWorkloadClientset is kubernetes.NewForConfig for the groups of workloadClient: one HTTP client and,
// as kubernetes.NewForConfig does, one rate limiter shared by every group.
func newWorkloadClientset(cfg *rest.Config) (*workloadClientset, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		if cfg.Burst <= 0 {
			return nil, fmt.Errorf("burst is required to be greater than 0 when RateLimiter is not set and QPS is set to greater than 0")
		}
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	out := &workloadClientset{}
	// The first wrapper sees the transport client-go built, before any other wraps it.
	cfg.WrapTransport = transport.Wrappers(func(rt http.RoundTripper) http.RoundTripper {
		if t, ok := rt.(interface{ CloseIdleConnections() }); ok {
			out.transport = t
		}
		return rt
	}, cfg.WrapTransport)
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	if out.core, err = corev1client.NewForConfigAndClient(cfg, httpClient); err != nil {
		return nil, err
	}
	if out.rbac, err = rbacv1client.NewForConfigAndClient(cfg, httpClient); err != nil {
		return nil, err
	}
	if out.authn, err = authenticationv1client.NewForConfigAndClient(cfg, httpClient); err != nil {
		return nil, err
	}
	if out.discovery, err = discovery.NewDiscoveryClientForConfigAndClient(cfg, httpClient); err != nil {
		return nil, err
	}
	return out, nil
}

// connections caches one endpoint per Cluster, rebuilt only when Cluster API rewrites the Secret, so a
// steady fleet reads no Secret; each use builds its clients from it (see connection).
type connections struct {
	reader  client.Reader // uncached: CAPI kubeconfig Secrets are watched as metadata only
	meta    client.Reader // the metadata cache of CAPI kubeconfig Secrets
	timeout time.Duration
	qps     float32
	burst   int
	wrap    func(http.RoundTripper) http.RoundTripper
	// denied are the addresses no workload API server may have; maxResponseBytes caps each response.
	denied           []netip.Prefix
	maxResponseBytes int64

	mu sync.Mutex
	m  map[types.NamespacedName]*endpoint
}

// kubeconfigDataKey is the key Cluster API stores the kubeconfig under (util/secret.KubeconfigDataName).
const kubeconfigDataKey = "value"

func kubeconfigSecretName(cluster string) string { return cluster + "-kubeconfig" }

// get returns a connection to a Cluster, reading the Secret only if its resourceVersion changed. The
// caller closes it.
func (c *connections) get(ctx context.Context, cluster types.NamespacedName) (*connection, error) {
	ep, fresh, err := c.endpoint(ctx, cluster)
	if err != nil {
		return nil, err
	}
	conn := &connection{creds: ep.creds, client: fresh}
	if conn.client == nil {
		if conn.client, err = newWorkloadClientset(ep.config); err != nil {
			return nil, failure(fleetv1.ReasonKubeconfigInvalid, "Secret %s/%s: %s", cluster.Namespace, kubeconfigSecretName(cluster.Name), err)
		}
	}
	if ep.authenticated {
		conn.kube = conn.client
	}
	return conn, nil
}

// endpoint returns what reaching a Cluster takes, reading the Secret only if its resourceVersion
// changed; then it also returns the clients it built to check the kubeconfig, for a first use.
func (c *connections) endpoint(ctx context.Context, cluster types.NamespacedName) (*endpoint, *workloadClientset, error) {
	key := types.NamespacedName{Namespace: cluster.Namespace, Name: kubeconfigSecretName(cluster.Name)}
	meta := &metav1PartialSecret{}
	if err := c.meta.Get(ctx, key, meta.obj()); err != nil {
		if apierrors.IsNotFound(err) {
			c.forget(cluster)
			return nil, nil, failure(fleetv1.ReasonKubeconfigMissing, "Secret %s/%s does not exist", key.Namespace, key.Name)
		}
		return nil, nil, fmt.Errorf("read Secret %s/%s metadata: %w", key.Namespace, key.Name, err)
	}
	version := meta.obj().GetResourceVersion()
	c.mu.Lock()
	ep := c.m[cluster]
	c.mu.Unlock()
	if ep != nil && ep.secretVersion == version {
		return ep, nil, nil
	}

	// The metadata cache saw this version: the API server can answer from its watch cache ("not older
	// than version") instead of a quorum read from etcd.
	secret := &corev1.Secret{}
	if err := c.reader.Get(ctx, key, secret, &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: version}}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, failure(fleetv1.ReasonKubeconfigMissing, "Secret %s/%s does not exist", key.Namespace, key.Name)
		}
		return nil, nil, fmt.Errorf("read Secret %s/%s: %w", key.Namespace, key.Name, err)
	}
	data, ok := secret.Data[kubeconfigDataKey]
	if !ok {
		return nil, nil, failure(fleetv1.ReasonKubeconfigInvalid, "Secret %s/%s has no key %q", key.Namespace, key.Name, kubeconfigDataKey)
	}
	creds, err := kubeconfig.Parse(data)
	if err != nil {
		return nil, nil, failure(fleetv1.ReasonKubeconfigInvalid, "Secret %s/%s: %s", key.Namespace, key.Name, err)
	}
	ep = &endpoint{secretVersion: secret.ResourceVersion, creds: creds}
	if cfg, err := creds.RESTConfig(); err == nil {
		ep.config, ep.authenticated = c.prepare(cfg), true
	} else {
		ep.config = c.prepare(&rest.Config{Host: creds.Server, TLSClientConfig: rest.TLSClientConfig{
			Insecure: creds.Insecure, ServerName: creds.ServerName, CAData: caUnlessInsecure(creds),
		}})
	}
	// Built here, so a kubeconfig the client cannot use fails now, as KubeconfigInvalid.
	clients, err := newWorkloadClientset(ep.config)
	if err != nil {
		return nil, nil, failure(fleetv1.ReasonKubeconfigInvalid, "Secret %s/%s: %s", key.Namespace, key.Name, err)
	}
	c.mu.Lock()
	c.m[cluster] = ep
	c.mu.Unlock()
	return ep, clients, nil
}

// prepare sets what every workload client shares: timeout, user agent, test wrapper, and one rate
// limiter per workload cluster (kept across uses, as QPS and burst apply to the cluster). The clients
// speak HTTP/1.1, whose idle connections close on request (close), and each use gets its own transport
// rather than one in client-go's process-wide transport cache, which never forgets one.
func (c *connections) prepare(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = c.timeout
	cfg.QPS, cfg.Burst = c.qps, c.burst
	if c.qps > 0 {
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.qps, c.burst)
	}
	cfg.UserAgent = "fleetbridge"
	// A workload API server is a network peer: its address is checked as it is dialled, and what it
	// sends is capped.
	cfg.Dial = workloadhttp.DialContext(c.denied, c.timeout)
	maxBytes := c.maxResponseBytes
	if maxBytes <= 0 {
		maxBytes = workloadhttp.DefaultMaxResponseBytes
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return workloadhttp.LimitResponses(rt, maxBytes) })
	cfg.NextProtos = []string{"http/1.1"}
	if cfg.Proxy == nil {
		// What client-go uses when no proxy is set; a Proxy function also keeps the transport out of the cache.
		cfg.Proxy = utilnet.NewProxierWithNoProxyCIDR(http.ProxyFromEnvironment)
	}
	if c.wrap != nil {
		cfg.Wrap(c.wrap)
	}
	return cfg
}

func (c *connections) forget(cluster types.NamespacedName) {
	c.mu.Lock()
	delete(c.m, cluster)
	c.mu.Unlock()
}

func caUnlessInsecure(c *kubeconfig.Credentials) []byte {
	if c.Insecure {
		return nil
	}
	return c.CAData
}

// probe asks the workload API server for /version, within the reconcile's deadline. Only a cluster
// whose credential is an allowlisted exec plugin (which the controller does not run) is asked
// anonymously, where a 401 or 403 still shows the server is up (its version is then unknown).
func (conn *connection) probe(ctx context.Context) (clusterFacts, error) {
	body, err := conn.client.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		if conn.kube == nil && (apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)) {
			return clusterFacts{}, nil
		}
		if apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err) {
			return clusterFacts{}, failure(fleetv1.ReasonAccessDenied, "the workload API server %s refused the CAPI credentials for /version", conn.creds.Server)
		}
		return clusterFacts{}, unreachable(conn.creds.Server, "/version", err)
	}
	var info version.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return clusterFacts{}, failure(fleetv1.ReasonClusterUnreachable, "the workload API server %s answered /version with something that is not a version", conn.creds.Server)
	}
	return clusterFacts{KubernetesVersion: info.GitVersion}, nil
}

// unreachable classifies a failed call to a workload API server: a denied address, a response over the
// cap, or anything else that kept it from answering.
func unreachable(server, what string, err error) error {
	var denied *workloadhttp.DeniedAddressError
	switch {
	case errors.As(err, &denied):
		return failure(fleetv1.ReasonDeniedAddress, "the workload API server %s resolves to a denied address (%s)", server, denied.Address)
	case errors.Is(err, workloadhttp.ErrResponseTooLarge):
		return failure(fleetv1.ReasonClusterUnreachable, "the workload API server %s: the response to %s was too large (over the controller's cap)", server, what)
	}
	return failure(fleetv1.ReasonClusterUnreachable, "the workload API server %s did not answer %s: %s", server, what, shortError(err))
}

// shortError keeps an error message to one bounded line for status and Events.
func shortError(err error) string { return clip(err.Error()) }

// clip bounds a message copied from elsewhere (an error, a condition of a Cluster) to 200 bytes.
func clip(msg string) string {
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}
