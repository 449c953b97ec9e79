package testenv_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

var mgmt *testenv.Management

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, testenv.Options{}, &mgmt)) }

// A CAPI Cluster published by the test bed is reachable through its <name>-kubeconfig Secret, exactly
// as the registrar will reach it.
func TestWorkloadReachableThroughCAPIKubeconfigSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	w, err := mgmt.AddWorkload(ctx, "fleet-a", "edge-1", testenv.ClusterOptions{Labels: map[string]string{"env": "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Client.Create(ctx, &corev1.Namespace{}); err == nil {
		t.Fatal("creating a nameless namespace should fail on a real API server")
	}

	cluster := &clusterv1.Cluster{}
	if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: "fleet-a", Name: "edge-1"}, cluster); err != nil {
		t.Fatal(err)
	}
	if cluster.Status.Initialization.ControlPlaneInitialized == nil || !*cluster.Status.Initialization.ControlPlaneInitialized {
		t.Fatalf("control plane not marked initialized: %+v", cluster.Status)
	}

	secret := &corev1.Secret{}
	if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: "fleet-a", Name: "edge-1-kubeconfig"}, secret); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["value"])
	if err != nil {
		t.Fatal(err)
	}
	remote, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	namespaces := &corev1.NamespaceList{}
	if err := remote.List(ctx, namespaces); err != nil {
		t.Fatalf("list namespaces on the workload server: %v", err)
	}
	found := false
	for _, ns := range namespaces.Items {
		found = found || ns.Name == "kube-system"
	}
	if !found {
		t.Fatalf("kube-system not among %d namespaces of the workload server", len(namespaces.Items))
	}
	// The workload server is a different server from the management one.
	if cfg.Host == mgmt.Config.Host {
		t.Fatalf("workload and management servers share %s", cfg.Host)
	}
}

// The CRDs' CEL rules reject bad input at admission.
func TestCRDValidation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cases := []struct {
		name    string
		obj     client.Object
		wantErr bool
	}{
		{"registration without outputs", &fleetv1.Registration{}, true},
		{"registration with argocd", &fleetv1.Registration{Spec: fleetv1.RegistrationSpec{ArgoCD: &fleetv1.ArgoCDTarget{}}}, false},
		{"token TTL below floor", &fleetv1.Registration{Spec: fleetv1.RegistrationSpec{
			ArgoCD:      &fleetv1.ArgoCDTarget{},
			Credentials: fleetv1.Credentials{TokenTTL: duration(5 * time.Minute)},
		}}, true},
		{"token TTL at floor", &fleetv1.Registration{Spec: fleetv1.RegistrationSpec{
			ArgoCD:      &fleetv1.ArgoCDTarget{},
			Credentials: fleetv1.Credentials{TokenTTL: duration(10 * time.Minute)},
		}}, false},
		{"flux without namespaces", &fleetv1.Registration{Spec: fleetv1.RegistrationSpec{Flux: &fleetv1.FluxTarget{}}}, true},
		{"reserved static label", &fleetv1.Registration{Spec: fleetv1.RegistrationSpec{
			ArgoCD: &fleetv1.ArgoCDTarget{},
			Labels: fleetv1.LabelPolicy{Static: map[string]string{"fleetbridge.io/cluster": "x"}},
		}}, true},
		{"workload with path and chart", workload(fleetv1.WorkloadSource{RepoURL: "https://x", Path: "a", Chart: "b"}), true},
		{"workload with neither path nor chart", workload(fleetv1.WorkloadSource{RepoURL: "https://x"}), true},
		{"workload with path", workload(fleetv1.WorkloadSource{RepoURL: "https://x", Path: "a"}), false},
	}
	if err := mgmt.EnsureNamespace(ctx, "crd-validation", nil); err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.obj.SetName(fmt.Sprintf("case-%d", i))
			if _, ok := tc.obj.(*fleetv1.Workload); ok {
				tc.obj.SetNamespace("crd-validation")
			}
			err := mgmt.Client.Create(ctx, tc.obj, client.DryRunAll)
			if (err != nil) != tc.wantErr {
				t.Fatalf("create: err = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func workload(src fleetv1.WorkloadSource) *fleetv1.Workload {
	return &fleetv1.Workload{Spec: fleetv1.WorkloadSpec{Source: src, Destination: fleetv1.WorkloadDestination{Namespace: "apps"}}}
}

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
