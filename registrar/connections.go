package registrar

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
)

// connection is what the controller knows about reaching one workload cluster, built from one version
// of its CAPI kubeconfig Secret. The credentials live only here, in memory.
type connection struct {
	secretVersion string
	creds         *kubeconfig.Credentials
	// kube is nil when the kubeconfig has no credential the controller may use itself (exec-only).
	kube kubernetes.Interface
	// anonymous probes /version when kube is nil.
	anonymous kubernetes.Interface
}

// connections caches one connection per Cluster, rebuilt only when Cluster API rewrites the Secret,
// so a steady fleet reuses its HTTP/2 connections and reads no Secret.
type connections struct {
	reader  client.Reader // uncached: CAPI kubeconfig Secrets are watched as metadata only
	meta    client.Reader // the metadata cache of CAPI kubeconfig Secrets
	timeout time.Duration
	qps     float32
	burst   int
	wrap    func(http.RoundTripper) http.RoundTripper

	mu sync.Mutex
	m  map[types.NamespacedName]*connection
}

// kubeconfigDataKey is the key Cluster API stores the kubeconfig under (util/secret.KubeconfigDataName).
const kubeconfigDataKey = "value"

func kubeconfigSecretName(cluster string) string { return cluster + "-kubeconfig" }

// get returns the connection for a Cluster, reading the Secret only if its resourceVersion changed.
func (c *connections) get(ctx context.Context, cluster types.NamespacedName) (*connection, error) {
	key := types.NamespacedName{Namespace: cluster.Namespace, Name: kubeconfigSecretName(cluster.Name)}
	meta := &metav1PartialSecret{}
	if err := c.meta.Get(ctx, key, meta.obj()); err != nil {
		if apierrors.IsNotFound(err) {
			c.forget(cluster)
			return nil, failure(fleetv1.ReasonKubeconfigMissing, "Secret %s/%s does not exist", key.Namespace, key.Name)
		}
		return nil, fmt.Errorf("read Secret %s/%s metadata: %w", key.Namespace, key.Name, err)
	}
	version := meta.obj().GetResourceVersion()
	c.mu.Lock()
	conn := c.m[cluster]
	c.mu.Unlock()
	if conn != nil && conn.secretVersion == version {
		return conn, nil
	}

	secret := &corev1.Secret{}
	if err := c.reader.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, failure(fleetv1.ReasonKubeconfigMissing, "Secret %s/%s does not exist", key.Namespace, key.Name)
		}
		return nil, fmt.Errorf("read Secret %s/%s: %w", key.Namespace, key.Name, err)
	}
	data, ok := secret.Data[kubeconfigDataKey]
	if !ok {
		return nil, failure(fleetv1.ReasonKubeconfigInvalid, "Secret %s/%s has no key %q", key.Namespace, key.Name, kubeconfigDataKey)
	}
	creds, err := kubeconfig.Parse(data)
	if err != nil {
		return nil, failure(fleetv1.ReasonKubeconfigInvalid, "Secret %s/%s: %s", key.Namespace, key.Name, err)
	}
	conn = &connection{secretVersion: secret.ResourceVersion, creds: creds}
	if cfg, err := creds.RESTConfig(); err == nil {
		conn.kube, err = c.clientFor(cfg)
		if err != nil {
			return nil, failure(fleetv1.ReasonKubeconfigInvalid, "Secret %s/%s: %s", key.Namespace, key.Name, err)
		}
	} else {
		anon := &rest.Config{Host: creds.Server, TLSClientConfig: rest.TLSClientConfig{
			Insecure: creds.Insecure, ServerName: creds.ServerName, CAData: caUnlessInsecure(creds),
		}}
		conn.anonymous, err = c.clientFor(anon)
		if err != nil {
			return nil, failure(fleetv1.ReasonKubeconfigInvalid, "Secret %s/%s: %s", key.Namespace, key.Name, err)
		}
	}
	c.mu.Lock()
	c.m[cluster] = conn
	c.mu.Unlock()
	return conn, nil
}

func (c *connections) clientFor(cfg *rest.Config) (kubernetes.Interface, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = c.timeout
	cfg.QPS, cfg.Burst = c.qps, c.burst
	cfg.UserAgent = "fleetbridge"
	if c.wrap != nil {
		cfg.Wrap(c.wrap)
	}
	return kubernetes.NewForConfig(cfg)
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

// probe asks the workload API server for /version. Without usable credentials it asks anonymously, and a
// 401 or 403 still proves the server is up (its version is then unknown).
func (conn *connection) probe(ctx context.Context) (clusterFacts, error) {
	kube := conn.kube
	if kube == nil {
		kube = conn.anonymous
	}
	info, err := kube.Discovery().ServerVersion()
	if err != nil {
		if conn.kube == nil && (apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)) {
			return clusterFacts{}, nil
		}
		if apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err) {
			return clusterFacts{}, failure(fleetv1.ReasonAccessDenied, "the workload API server %s refused the CAPI credentials for /version", conn.creds.Server)
		}
		return clusterFacts{}, failure(fleetv1.ReasonClusterUnreachable, "the workload API server %s did not answer /version: %s", conn.creds.Server, shortError(err))
	}
	return clusterFacts{KubernetesVersion: info.GitVersion}, nil
}

// shortError keeps an error message to one bounded line for status and Events.
func shortError(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}
