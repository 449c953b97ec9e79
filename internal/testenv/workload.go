package testenv

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Workload is a workload cluster: its own kube-apiserver, published in the management server as a
// CAPI Cluster named Namespace/Name with an admin kubeconfig Secret.
type Workload struct {
	Namespace, Name string
	Env             *envtest.Environment
	// Config is an admin rest config for the workload server.
	Config *rest.Config
	// Client is an admin client for the workload server.
	Client client.Client
	// AdminKubeConfig is what the CAPI <name>-kubeconfig Secret holds.
	AdminKubeConfig []byte
	stopped         bool
}

// ClusterOptions shape the CAPI Cluster object a test publishes.
type ClusterOptions struct {
	Labels      map[string]string
	Annotations map[string]string
	// NotInitialized leaves the control plane uninitialized (no ControlPlaneInitialized condition).
	NotInitialized bool
	Paused         bool
	// ClusterClass, when set, becomes spec.topology.classRef.name (with Version as spec.topology.version).
	ClusterClass string
	Version      string
}

// StartWorkload starts a workload API server with an admin user, as a CAPI control plane would.
func StartWorkload(namespace, name string) (*Workload, error) {
	assets, err := BinaryAssetsDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	if _, err := env.Start(); err != nil {
		return nil, fmt.Errorf("testenv: start workload API server %s/%s: %w", namespace, name, err)
	}
	admin, err := env.ControlPlane.AddUser(envtest.User{Name: name + "-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	c, err := client.New(admin.Config(), client.Options{Scheme: NewScheme()})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Workload{Namespace: namespace, Name: name, Env: env, Config: admin.Config(), Client: c, AdminKubeConfig: kubeconfig}, nil
}

// Stop stops the workload API server; the CAPI objects in the management server stay.
func (w *Workload) Stop() error {
	if w.stopped {
		return nil
	}
	w.stopped = true
	return w.Env.Stop()
}

// Server is the workload API server's URL.
func (w *Workload) Server() string { return strings.TrimSuffix(w.Config.Host, "/") }

// AddWorkload starts a workload API server and publishes it as a CAPI Cluster. Management.Stop stops it.
func (m *Management) AddWorkload(ctx context.Context, namespace, name string, opts ClusterOptions) (*Workload, error) {
	w, err := StartWorkload(namespace, name)
	if err != nil {
		return nil, err
	}
	m.workloads = append(m.workloads, w)
	if err := m.PublishCluster(ctx, namespace, name, w.Server(), w.AdminKubeConfig, opts); err != nil {
		return nil, err
	}
	return w, nil
}

// PublishCluster writes a CAPI v1beta2 Cluster for the API server at serverURL (status through the
// status subresource) and its <name>-kubeconfig Secret, as Cluster API does. kubeconfig may be any
// bytes, so tests can publish broken or provider-specific kubeconfigs.
func (m *Management) PublishCluster(ctx context.Context, namespace, name, serverURL string, kubeconfig []byte, opts ClusterOptions) error {
	if err := m.EnsureNamespace(ctx, namespace, nil); err != nil {
		return err
	}
	if err := m.WriteKubeconfigSecret(ctx, namespace, name, kubeconfig); err != nil {
		return err
	}
	cluster := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{
		Namespace: namespace, Name: name, Labels: opts.Labels, Annotations: opts.Annotations,
	}}
	if u, err := url.Parse(serverURL); err == nil && u.Hostname() != "" {
		port, _ := strconv.Atoi(u.Port())
		cluster.Spec.ControlPlaneEndpoint = clusterv1.APIEndpoint{Host: u.Hostname(), Port: int32(port)}
	}
	if opts.Paused {
		cluster.Spec.Paused = ptr.To(true)
	}
	if opts.ClusterClass != "" {
		cluster.Spec.Topology.ClassRef.Name = opts.ClusterClass
		cluster.Spec.Topology.Version = opts.Version
	}
	if err := m.Client.Create(ctx, cluster); err != nil {
		return fmt.Errorf("testenv: create Cluster %s/%s: %w", namespace, name, err)
	}
	if !opts.NotInitialized {
		return m.MarkControlPlaneInitialized(ctx, namespace, name)
	}
	return nil
}

// MarkControlPlaneInitialized sets the v1beta2 status a CAPI control plane reports once it serves requests.
func (m *Management) MarkControlPlaneInitialized(ctx context.Context, namespace, name string) error {
	cluster := &clusterv1.Cluster{}
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, cluster); err != nil {
		return err
	}
	cluster.Status.Initialization.ControlPlaneInitialized = ptr.To(true)
	cluster.Status.Initialization.InfrastructureProvisioned = ptr.To(true)
	for _, t := range []string{clusterv1.ClusterControlPlaneInitializedCondition, clusterv1.ClusterAvailableCondition} {
		meta.SetStatusCondition(&cluster.Status.Conditions, metav1.Condition{
			Type: t, Status: metav1.ConditionTrue, Reason: "Testbed", ObservedGeneration: cluster.Generation,
		})
	}
	cluster.Status.Phase = string(clusterv1.ClusterPhaseProvisioned)
	if err := m.Client.Status().Update(ctx, cluster); err != nil {
		return fmt.Errorf("testenv: update Cluster %s/%s status: %w", namespace, name, err)
	}
	return nil
}

// WriteKubeconfigSecret creates or replaces the CAPI <name>-kubeconfig Secret.
func (m *Management) WriteKubeconfigSecret(ctx context.Context, namespace, name string, kubeconfig []byte) error {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: name + "-kubeconfig",
			Labels: map[string]string{clusterv1.ClusterNameLabel: name},
		},
		Type: clusterv1.ClusterSecretType,
		Data: map[string][]byte{"value": kubeconfig},
	}
	err := m.Client.Create(ctx, secret)
	if apierrors.IsAlreadyExists(err) {
		existing := &corev1.Secret{}
		if err := m.Client.Get(ctx, client.ObjectKeyFromObject(secret), existing); err != nil {
			return err
		}
		existing.Data = secret.Data
		return m.Client.Update(ctx, existing)
	}
	return err
}

// EnsureNamespace creates a namespace with labels if it does not exist.
func (m *Management) EnsureNamespace(ctx context.Context, name string, labels map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := m.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("testenv: create namespace %s: %w", name, err)
	}
	return nil
}
