package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

var mgmt *testenv.Management

// serviceMonitorCRD ships in Prometheus Operator's repository, not in a module fleetbridge imports.
const serviceMonitorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

func TestMain(m *testing.M) {
	crd, err := testenv.DownloadedModuleFile(serviceMonitorModule, "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Flux Operator's CRDs: the install test's plugin refreshes a ResourceSetInputProvider with the chart's RBAC.
	flux, err := testenv.FluxCRDPaths(testenv.FluxOperatorModule)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(testenv.RunMain(m, testenv.Options{ExtraCRDPaths: append(flux, crd)}, &mgmt))
}

// decodeObjects splits a multi-document YAML stream into objects, skipping empty documents.
func decodeObjects(t *testing.T, manifest []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if err.Error() == "EOF" {
				return objs
			}
			t.Fatalf("decode manifest: %v", err)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

// dryRunApply server-side applies every object with dryRun=All, namespaces created for real first, and
// reports each rejection.
func dryRunApply(t *testing.T, ctx context.Context, what string, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, obj := range objs {
		if ns := obj.GetNamespace(); ns != "" {
			if err := mgmt.EnsureNamespace(ctx, ns, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, obj := range objs {
		err := mgmt.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj),
			client.DryRunAll, client.FieldOwner("fleetbridge-config-test"), client.ForceOwnership)
		if err != nil {
			t.Errorf("%s: %s %s/%s rejected: %v", what, obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
