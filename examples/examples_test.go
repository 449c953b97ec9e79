package examples

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
	"github.com/fleetbridge/fleetbridge/plugin"
)

var mgmt *testenv.Management

func TestMain(m *testing.M) {
	argo, err := testenv.ArgoCDCRDPaths()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(testenv.RunMain(m, testenv.Options{ExtraCRDPaths: argo}, &mgmt))
}

// Every example whose CRD the test bed has (fleetbridge, Argo CD) is applied with server-side dry-run.
// Flux's own objects are checked against the Registration that serves them: their spec.kubeConfig must
// decode as Flux's meta.KubeConfigReference and name the Secret fleetbridge writes in their namespace.
func TestExamplesApply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	files, err := filepath.Glob("*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	var fluxRegs []fleetv1.Registration
	var fluxUsers []*unstructured.Unstructured
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
				t.Fatalf("%s #%d: %v", file, i, err)
			}
			group := obj.GroupVersionKind().Group
			switch {
			case strings.HasSuffix(group, "toolkit.fluxcd.io"):
				fluxUsers = append(fluxUsers, obj)
				continue
			case group == "fluxcd.controlplane.io":
				checkFluxOperator(t, file, obj)
				continue
			case group == "fleetbridge.io" && obj.GetKind() == "Registration":
				reg := fleetv1.Registration{}
				if err := yaml.UnmarshalStrict(doc, &reg); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				if reg.Spec.Flux != nil {
					fluxRegs = append(fluxRegs, reg)
				}
			}
			if ns := obj.GetNamespace(); ns != "" {
				if err := mgmt.EnsureNamespace(ctx, ns, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := mgmt.Client.Create(ctx, obj, client.DryRunAll); err != nil {
				t.Errorf("%s: %s %s rejected: %v", file, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	if len(fluxUsers) == 0 || len(fluxRegs) == 0 {
		t.Fatal("the Flux example needs a Registration with a flux block and objects using its Secrets")
	}
	for _, obj := range fluxUsers {
		raw, found, _ := unstructured.NestedMap(obj.Object, "spec", "kubeConfig")
		if !found {
			t.Errorf("%s %s has no spec.kubeConfig", obj.GetKind(), obj.GetName())
			continue
		}
		data, _ := yaml.Marshal(raw)
		ref := meta.KubeConfigReference{}
		if err := yaml.UnmarshalStrict(data, &ref); err != nil || ref.SecretRef == nil {
			t.Errorf("%s %s: spec.kubeConfig is not a meta.KubeConfigReference with a secretRef: %v", obj.GetKind(), obj.GetName(), err)
			continue
		}
		if !servedBy(fluxRegs, obj.GetNamespace(), ref) {
			t.Errorf("%s %s/%s refers to Secret %q key %q, which no example Registration writes there",
				obj.GetKind(), obj.GetNamespace(), obj.GetName(), ref.SecretRef.Name, ref.SecretRef.Key)
		}
	}
}

// servedBy says whether a Registration writes the referenced Secret into namespace, for some cluster.
func servedBy(regs []fleetv1.Registration, namespace string, ref meta.KubeConfigReference) bool {
	if ref.SecretRef.Key != "" && ref.SecretRef.Key != "value" {
		return false
	}
	for _, reg := range regs {
		inNamespace := false
		for _, ns := range reg.Spec.Flux.Namespaces {
			inNamespace = inNamespace || ns == namespace
		}
		if !inNamespace {
			continue
		}
		tmpl, err := template.New("name").Parse(reg.Spec.Flux.SecretNameTemplate)
		if err != nil {
			return false
		}
		cluster := strings.TrimSuffix(ref.SecretRef.Name, "-fleetbridge-kubeconfig")
		var out bytes.Buffer
		if tmpl.Execute(&out, map[string]string{"Name": cluster, "Namespace": "any"}) == nil && out.String() == ref.SecretRef.Name {
			return true
		}
	}
	return false
}

// checkFluxOperator checks what the test bed cannot apply (no Flux Operator CRDs): an ExternalService
// provider must ask fleetbridge's endpoint with query parameters it accepts.
func checkFluxOperator(t *testing.T, file string, obj *unstructured.Unstructured) {
	t.Helper()
	if obj.GetKind() != "ResourceSetInputProvider" {
		return
	}
	raw, _, _ := unstructured.NestedString(obj.Object, "spec", "url")
	u, err := url.Parse(raw)
	if err != nil || u.Path != "/api/v1/flux/inputs" {
		t.Errorf("%s: url %q is not fleetbridge's Flux endpoint", file, raw)
		return
	}
	if _, err := plugin.ParseFluxQuery(u.Query()); err != nil {
		t.Errorf("%s: fleetbridge would refuse the query: %v", file, err)
	}
}
