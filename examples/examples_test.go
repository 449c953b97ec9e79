package examples

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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

// fluxCRDPaths are the CRD directories of Flux's modules: every kind each of them defines (Kustomization;
// HelmRelease; GitRepository, HelmRepository, OCIRepository and the other sources; ResourceSet,
// ResourceSetInputProvider, FluxInstance and FluxReport). They serve the API versions the examples use:
// kustomize.toolkit.fluxcd.io/v1, helm.toolkit.fluxcd.io/v2, source.toolkit.fluxcd.io/v1 and
// fluxcd.controlplane.io/v1.
func fluxCRDPaths() ([]string, error) {
	return testenv.FluxCRDPaths(testenv.KustomizeControllerModule, testenv.HelmControllerModule,
		testenv.SourceControllerModule, testenv.FluxOperatorModule)
}

func TestMain(m *testing.M) {
	argo, err := testenv.ArgoCDCRDPaths()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	flux, err := fluxCRDPaths()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(testenv.RunMain(m, testenv.Options{ExtraCRDPaths: append(argo, flux...)}, &mgmt))
}

// Every example is applied with server-side dry-run: the test bed has the fleetbridge, Cluster API,
// Argo CD and Flux (toolkit and Flux Operator) CRDs. On top of that, Flux's Kustomizations and
// HelmReleases are checked against the Registration that serves them: their spec.kubeConfig must decode
// as Flux's meta.KubeConfigReference and name the Secret fleetbridge writes in their namespace; and a
// Flux Operator ResourceSetInputProvider must ask fleetbridge's endpoint with a query it accepts.
func TestExamplesApply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	files, err := filepath.Glob("*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	type example struct {
		file string
		obj  *unstructured.Unstructured
	}
	var examples []example
	var fluxRegs []fleetv1.Registration
	var fluxUsers []*unstructured.Unstructured
	for _, file := range files {
		if filepath.Base(file) == "values.yaml" {
			continue // Helm values, not objects: config's chart tests render the chart with them
		}
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
			examples = append(examples, example{file, obj})
			group := obj.GroupVersionKind().Group
			switch {
			case group == "kustomize.toolkit.fluxcd.io" || group == "helm.toolkit.fluxcd.io":
				fluxUsers = append(fluxUsers, obj)
			case group == "fluxcd.controlplane.io":
				checkFluxOperator(t, file, obj)
			case group == "fleetbridge.io" && obj.GetKind() == "Registration":
				reg := fleetv1.Registration{}
				if err := yaml.UnmarshalStrict(doc, &reg); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				if reg.Spec.Flux != nil {
					fluxRegs = append(fluxRegs, reg)
				}
			}
		}
	}
	// The examples' own Namespaces go first, before the namespaces their objects need are created (the
	// dry-run of a Namespace that already exists fails).
	isNamespace := func(obj *unstructured.Unstructured) bool {
		gvk := obj.GroupVersionKind()
		return gvk.Group == "" && gvk.Kind == "Namespace"
	}
	for _, namespaces := range []bool{true, false} {
		for _, ex := range examples {
			if isNamespace(ex.obj) != namespaces {
				continue
			}
			if ns := ex.obj.GetNamespace(); ns != "" {
				if err := mgmt.EnsureNamespace(ctx, ns, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := mgmt.Client.Create(ctx, ex.obj, client.DryRunAll); err != nil {
				t.Errorf("%s: %s %s rejected: %v", ex.file, ex.obj.GetKind(), ex.obj.GetName(), err)
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
		// The template rendered for placeholders is a pattern every Cluster's Secret name matches.
		var out bytes.Buffer
		if tmpl.Execute(&out, map[string]string{"Name": "NAME", "Namespace": "NAMESPACE"}) != nil {
			return false
		}
		pattern := strings.NewReplacer("NAMESPACE", "[a-z0-9-]+", "NAME", "[a-z0-9.-]+").Replace(regexp.QuoteMeta(out.String()))
		if regexp.MustCompile("^" + pattern + "$").MatchString(ref.SecretRef.Name) {
			return true
		}
	}
	return false
}

// checkFluxOperator checks what Flux Operator's CRD schema cannot: an ExternalService provider must ask
// fleetbridge's endpoint at one of the --plugin-flux-urls of the kustomize install (so fleetbridge
// refreshes it), with query parameters it accepts, and set spec.filter.limit (Flux Operator's default of
// 100 silently drops the rest of a larger answer).
func checkFluxOperator(t *testing.T, file string, obj *unstructured.Unstructured) {
	t.Helper()
	if obj.GetKind() != "ResourceSetInputProvider" {
		return
	}
	u, _, _ := unstructured.NestedString(obj.Object, "spec", "url")
	query, ok := installedFluxEndpoints(t).Match(u)
	if !ok {
		t.Errorf("%s: url %q is not fleetbridge's Flux endpoint at one of config/manager's --plugin-flux-urls", file, u)
		return
	}
	if err := plugin.ParseFluxQuery(query); err != nil {
		t.Errorf("%s: fleetbridge would refuse the query: %v", file, err)
	}
	raw, _, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", "filter", "limit")
	if limit, _ := raw.(float64); limit <= 0 { // sigs.k8s.io/yaml decodes numbers as float64
		t.Errorf("%s: ResourceSetInputProvider %s does not set spec.filter.limit", file, obj.GetName())
	}
}

// installedFluxEndpoints are the --plugin-flux-urls of the kustomize install (config/manager).
func installedFluxEndpoints(t *testing.T) plugin.FluxEndpoints {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "config", "manager", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if _, urls, ok := strings.Cut(strings.TrimSpace(line), "- --plugin-flux-urls="); ok {
			endpoints, err := plugin.ParseFluxEndpoints(strings.Split(urls, ","))
			if err != nil {
				t.Fatal(err)
			}
			return endpoints
		}
	}
	t.Fatal("config/manager/deployment.yaml has no --plugin-flux-urls")
	return nil
}
