package conformance

// Without fleetbridge, the usual way to deploy W workloads to the clusters matching a selector is a matrix of
// Argo CD's own Cluster and List generators. docs/performance.md compares what fleetbridge's plugin server costs
// to produce the cluster x workload pairs with what that matrix costs Argo CD's ApplicationSet controller for the
// same fleet, so this file runs Argo CD's real generators (not a model of them) on the synthetic fleet that the
// comparison uses on both sides: changing the fleet here without changing fleetbridge's side makes the numbers
// incomparable.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/argoproj/argo-cd/v2/applicationset/controllers/template"
	"github.com/argoproj/argo-cd/v2/applicationset/generators"
	"github.com/argoproj/argo-cd/v2/applicationset/utils"
	appv1 "github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"
)

const (
	fleetArgoCDNamespace = "argocd"
	fleetWorkloads       = 20
)

var fleetRegions = []string{"eu", "us", "ap", "sa"}

// fleetClusterSecrets is the synthetic fleet: every field that reaches the generator's params (name, server,
// labels) is derived from i, so fleetbridge's side can build the identical fleet from the same rules.
func fleetClusterSecrets(n int) []runtime.Object {
	objs := make([]runtime.Object, 0, n)
	for i := range n {
		env := "staging"
		if i%2 == 0 {
			env = "prod"
		}
		name := fmt.Sprintf("fleet-cluster-%05d", i)
		objs = append(objs, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: fleetArgoCDNamespace,
				Name:      name,
				Labels: map[string]string{
					"argocd.argoproj.io/secret-type": "cluster",
					"env":                            env,
					"region":                         fleetRegions[i%4],
					"team":                           fmt.Sprintf("team-%d", i%10),
				},
			},
			Data: map[string][]byte{
				"name":   []byte(name),
				"server": []byte(fmt.Sprintf("https://10.%d.%d.%d:6443", i/65536%256, i/256%256, i%256)),
				"config": []byte(`{"bearerToken":"x","tlsClientConfig":{"insecure":false}}`),
			},
		})
	}
	return objs
}

// matrixApplicationSet is what a user writes today: clusters selected by label, times a list of workloads.
// Each list element references the cluster's name, because that is how real matrices name their Applications,
// and it is what makes the controller re-render the list generator once per cluster (the cost measured here).
// The list's own "name" is shadowed by the cluster's in the merged params (the first generator wins in Argo
// CD's matrix merge), which the template relies on for the destination; the workload survives in appName and
// destinationNamespace.
func matrixApplicationSet(t testing.TB) *appv1.ApplicationSet {
	t.Helper()
	elements := make([]apiextensionsv1.JSON, 0, fleetWorkloads)
	for w := range fleetWorkloads {
		name := fmt.Sprintf("workload-%02d", w)
		raw, err := json.Marshal(map[string]string{
			"name":                 name,
			"repoURL":              fmt.Sprintf("https://git.example.com/apps/%s.git", name),
			"path":                 "deploy",
			"targetRevision":       "main",
			"destinationNamespace": name,
			"appName":              "{{ .name }}-" + name,
		})
		if err != nil {
			t.Fatal(err)
		}
		elements = append(elements, apiextensionsv1.JSON{Raw: raw})
	}
	clusters := &appv1.ClusterGenerator{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}
	return &appv1.ApplicationSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleetArgoCDNamespace, Name: "fleet"},
		Spec: appv1.ApplicationSetSpec{
			GoTemplate:        true,
			GoTemplateOptions: []string{"missingkey=error"},
			Generators: []appv1.ApplicationSetGenerator{{
				Matrix: &appv1.MatrixGenerator{Generators: []appv1.ApplicationSetNestedGenerator{
					{Clusters: clusters},
					{List: &appv1.ListGenerator{Elements: elements}},
				}},
			}},
			Template: appv1.ApplicationSetTemplate{
				ApplicationSetTemplateMeta: appv1.ApplicationSetTemplateMeta{Name: "{{ .appName }}"},
				Spec: appv1.ApplicationSpec{
					Project: "default",
					Source: &appv1.ApplicationSource{
						RepoURL:        "{{ .repoURL }}",
						Path:           "{{ .path }}",
						TargetRevision: "{{ .targetRevision }}",
					},
					Destination: appv1.ApplicationDestination{Name: "{{ .name }}", Namespace: "{{ .destinationNamespace }}"},
				},
			},
		},
	}
}

// argoCDGenerators wires the generator set exactly as the controller's main does (GetGenerators), with fake
// clients in place of the manager's cached client and the clientset. Generators this ApplicationSet does not
// use get nil dependencies: they are never called.
func argoCDGenerators(objs []runtime.Object) (map[string]generators.Generator, client.Client) {
	c := crfake.NewClientBuilder().WithRuntimeObjects(objs...).Build()
	clientset := k8sfake.NewClientset(objs...)
	return generators.GetGenerators(context.Background(), c, clientset, fleetArgoCDNamespace, nil, nil, generators.SCMConfig{}), c
}

// transformMatrix is the controller's generator step for one reconcile (template.GenerateApplications calls
// Transform the same way). Rendering the Application template is left out: it costs the same per pair whichever
// generator produced the pair, so it is not what the comparison is about.
func transformMatrix(appSet *appv1.ApplicationSet, gens map[string]generators.Generator, c client.Client) ([]map[string]any, error) {
	results, err := generators.Transform(appSet.Spec.Generators[0], gens, appSet.Spec.Template, appSet, map[string]any{}, c)
	if err != nil {
		return nil, err
	}
	if len(results) != 1 {
		return nil, fmt.Errorf("want one generator result, have %d", len(results))
	}
	return results[0].Params, nil
}

func BenchmarkArgoCDMatrixGenerator(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			gens, c := argoCDGenerators(fleetClusterSecrets(n))
			appSet := matrixApplicationSet(b)
			want := n / 2 * fleetWorkloads
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				params, err := transformMatrix(appSet, gens, c)
				if err != nil {
					b.Fatal(err)
				}
				// A cheaper run that silently produced fewer pairs would make the comparison meaningless.
				if len(params) != want {
					b.Fatalf("%d parameter sets, want %d", len(params), want)
				}
			}
			b.ReportMetric(float64(want), "pairs/op")
		})
	}
}

// The benchmark's ApplicationSet is only a fair baseline if it is correct: every prod cluster paired with every
// workload, the list interpolated with each cluster's name, and the template rendering under missingkey=error.
func TestArgoCDMatrixGeneratorPairs(t *testing.T) {
	const n = 8
	gens, c := argoCDGenerators(fleetClusterSecrets(n))
	appSet := matrixApplicationSet(t)
	params, err := transformMatrix(appSet, gens, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(params) != n/2*fleetWorkloads {
		t.Fatalf("%d parameter sets, want %d", len(params), n/2*fleetWorkloads)
	}
	pairs := map[string]bool{}
	for _, p := range params {
		cluster, _ := p["name"].(string)
		workload, _ := p["destinationNamespace"].(string)
		var i, w int
		if _, err := fmt.Sscanf(cluster, "fleet-cluster-%05d", &i); err != nil || i%2 != 0 {
			t.Errorf("name %q is not a prod cluster of the fleet", cluster)
		}
		if _, err := fmt.Sscanf(workload, "workload-%02d", &w); err != nil {
			t.Errorf("destinationNamespace %q is not a workload of the fleet", workload)
		}
		if p["server"] != fmt.Sprintf("https://10.0.0.%d:6443", i) {
			t.Errorf("%s: server %v", cluster, p["server"])
		}
		if labels, _ := p["metadata"].(map[string]any)["labels"].(map[string]string); labels["env"] != "prod" || labels["region"] != fleetRegions[i%4] {
			t.Errorf("%s: labels %v", cluster, p["metadata"])
		}
		if p["appName"] != cluster+"-"+workload {
			t.Errorf("appName %v: the list was not interpolated with the cluster's params", p["appName"])
		}
		if p["repoURL"] != fmt.Sprintf("https://git.example.com/apps/%s.git", workload) || p["path"] != "deploy" || p["targetRevision"] != "main" {
			t.Errorf("%s/%s: workload keys %v %v %v", cluster, workload, p["repoURL"], p["path"], p["targetRevision"])
		}
		pairs[cluster+"/"+workload] = true
	}
	if len(pairs) != n/2*fleetWorkloads {
		t.Fatalf("%d distinct pairs, want %d", len(pairs), n/2*fleetWorkloads)
	}

	// The template must render from every param set under missingkey=error, rendered as the controller's
	// template.GenerateApplications does (that function is not called itself only because it takes a logrus
	// entry, which would make logrus a direct requirement of this module for one test).
	tmpl := template.GetTempApplication(appSet.Spec.Template)
	apps := make([]*appv1.Application, 0, len(params))
	for _, p := range params {
		app, err := (&utils.Render{}).RenderTemplateParams(tmpl, appSet.Spec.SyncPolicy, p, appSet.Spec.GoTemplate, appSet.Spec.GoTemplateOptions)
		if err != nil {
			t.Fatal(err)
		}
		apps = append(apps, app)
	}
	for _, app := range apps {
		ns := app.Spec.Destination.Namespace
		if app.Name != app.Spec.Destination.Name+"-"+ns || !strings.HasPrefix(app.Name, "fleet-cluster-") ||
			app.Spec.Source.RepoURL != fmt.Sprintf("https://git.example.com/apps/%s.git", ns) {
			t.Errorf("Application %s: destination %+v, source %+v", app.Name, app.Spec.Destination, app.Spec.Source)
		}
	}
}
