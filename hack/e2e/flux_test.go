package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
	"github.com/fleetbridge/fleetbridge/plugin"
)

// Flux Operator's real controllers turn fleetbridge's ExternalService answers into Kustomizations: a
// ResourceSetInputProvider polling the real fleetbridge binary, every 10 minutes so that only
// fleetbridge's reconcile request can make it quick, feeds a ResourceSet that renders one Kustomization
// per cluster x workload pair, deploying through the kubeconfig Secret the registrar wrote in the
// tenant's namespace. A newly registered cluster gets its Kustomization within 10 s, and a deregistered
// one loses it.
func TestFluxResourceSetFansOutWorkloads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := mgmt.Client
	const capiNS, tenant = "fleet-flux", "flux-tenant"
	labels := map[string]string{"env": "prod", "e2e": "flux"}
	_, err := mgmt.AddWorkload(ctx, capiNS, "edge-1", testenv.ClusterOptions{Labels: labels})
	must(t, err)

	addr := testenv.FreeAddr(t)
	operator, err := mgmt.StartFluxOperator(ctx, "flux-system")
	must(t, err)
	defer func() {
		if out := operator.Stop(); t.Failed() {
			t.Logf("Flux Operator log:\n%s", tail(out, 80))
		}
	}()
	fb := startFleetbridge(t, addr, "--plugin-flux-urls=http://"+addr)
	defer func() {
		if out := fb.Stop(); t.Failed() {
			t.Logf("fleetbridge log:\n%s", tail(out, 80))
		}
	}()

	must(t, mgmt.EnsureNamespace(ctx, tenant, nil))
	must(t, c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "fleetbridge-plugin-token"},
		Data:       map[string][]byte{"token": []byte(pluginToken)},
	}))
	must(t, c.Create(ctx, &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "flux-fleet"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"e2e": "flux"}},
			Flux:            &fleetv1.FluxTarget{Namespaces: []string{tenant}},
			Credentials:     fleetv1.Credentials{ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-flux-e2e"}},
		},
	}))
	must(t, c.Create(ctx, &fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "podinfo"},
		Spec: fleetv1.WorkloadSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
			Registration:    "flux-fleet",
			Source:          fleetv1.WorkloadSource{RepoURL: "https://github.com/stefanprodan/podinfo", Path: "./kustomize", TargetRevision: "master"},
			Destination:     fleetv1.WorkloadDestination{Namespace: "podinfo"},
		},
	}))
	must(t, c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "fluxcd.controlplane.io/v1", "kind": "ResourceSetInputProvider",
		"metadata": map[string]any{"namespace": tenant, "name": "fleetbridge",
			"annotations": map[string]any{"fluxcd.controlplane.io/reconcileEvery": "10m"}},
		"spec": map[string]any{
			"type": "ExternalService", "insecure": true,
			"url":       "http://" + addr + plugin.FluxInputsPath + "?workloadNamespace=" + tenant,
			"secretRef": map[string]any{"name": "fleetbridge-plugin-token"},
			"filter":    map[string]any{"limit": int64(50)},
		},
	}}))
	must(t, c.Create(ctx, fluxResourceSet(tenant)))

	expectKustomizations(t, ctx, tenant, capiNS+".edge-1.kubeconfig")

	// A new cluster: registered, then its Kustomization, with the provider's poll left at 10 minutes.
	_, err = mgmt.AddWorkload(ctx, capiNS, "edge-2", testenv.ClusterOptions{Labels: labels})
	must(t, err)
	start := time.Now() // the Cluster and its kubeconfig Secret exist, its control plane is initialized
	expectKustomizations(t, ctx, tenant, capiNS+".edge-1.kubeconfig", capiNS+".edge-2.kubeconfig")
	took := time.Since(start)
	t.Logf("a newly ready cluster had its Kustomization %.1fs after it was published", took.Seconds())
	if took > 10*time.Second {
		t.Fatalf("slower than 10 s: %s", took)
	}
	provider := &unstructured.Unstructured{}
	provider.SetGroupVersionKind(schemaProvider)
	must(t, c.Get(ctx, types.NamespacedName{Namespace: tenant, Name: "fleetbridge"}, provider))
	handled, _, _ := unstructured.NestedString(provider.Object, "status", "lastHandledReconcileAt")
	if handled == "" || handled != provider.GetAnnotations()[plugin.FluxReconcileRequestAnnotation] {
		t.Fatalf("Flux Operator handled reconcile request %q, fleetbridge last requested %q", handled, provider.GetAnnotations()[plugin.FluxReconcileRequestAnnotation])
	}

	// Deregistering a cluster (it stops matching the Registration) removes its Kustomization.
	patchClusterLabelsIn(t, ctx, capiNS, "edge-2", map[string]string{"env": "prod"})
	expectKustomizations(t, ctx, tenant, capiNS+".edge-1.kubeconfig")
}

var schemaProvider = schema.GroupVersionKind{Group: "fluxcd.controlplane.io", Version: "v1", Kind: "ResourceSetInputProvider"}

// fluxResourceSet renders a Kustomization per input, as examples/flux/resourceset.yaml does.
func fluxResourceSet(namespace string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "fluxcd.controlplane.io/v1", "kind": "ResourceSet",
		"metadata": map[string]any{"namespace": namespace, "name": "fleet-workloads"},
		"spec": map[string]any{
			"inputsFrom": []any{map[string]any{"apiVersion": "fluxcd.controlplane.io/v1", "kind": "ResourceSetInputProvider", "name": "fleetbridge"}},
			"resources": []any{map[string]any{
				"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
				"metadata": map[string]any{"name": "<< inputs.id >>", "namespace": namespace},
				"spec": map[string]any{
					"interval": "10m", "prune": true,
					"sourceRef":       map[string]any{"kind": "GitRepository", "name": "<< inputs.workload.name >>"},
					"path":            "<< inputs.workload.path >>",
					"targetNamespace": "<< inputs.workload.destinationNamespace >>",
					"kubeConfig": map[string]any{"secretRef": map[string]any{
						"name": "<< inputs.cluster.namespace >>.<< inputs.cluster.name >>.kubeconfig", "key": "value",
					}},
				},
			}},
		},
	}}
}

// expectKustomizations waits until the namespace's Kustomizations refer to exactly these kubeconfig
// Secrets, each of which the registrar wrote there.
func expectKustomizations(t *testing.T, ctx context.Context, namespace string, secrets ...string) {
	t.Helper()
	want := append([]string(nil), secrets...)
	sort.Strings(want)
	testenv.Eventually(t, 60*time.Second, "Kustomizations for "+fmt.Sprint(want), func() error {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion("kustomize.toolkit.fluxcd.io/v1")
		list.SetKind("KustomizationList")
		if err := mgmt.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return err
		}
		var got []string
		for _, k := range list.Items {
			name, _, _ := unstructured.NestedString(k.Object, "spec", "kubeConfig", "secretRef", "name")
			got = append(got, name)
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("Kustomizations use %v", got)
		}
		for _, name := range want {
			if err := mgmt.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &corev1.Secret{}); err != nil {
				return fmt.Errorf("kubeconfig Secret %s: %w", name, err)
			}
		}
		return nil
	})
}
