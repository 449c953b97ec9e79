package registrar

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// multiTenantExample is what examples/multi-tenant asks of fleetbridge and its plugin.
type multiTenantExample struct {
	namespaces    []corev1.Namespace
	registrations []fleetv1.Registration
	workloads     []fleetv1.Workload
	// applicationSets are the plugin filters of its ApplicationSets' plugin generators, by name.
	applicationSets map[string]fleet.Filter
}

func loadMultiTenantExample(t *testing.T) multiTenantExample {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "examples", "multi-tenant", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no multi-tenant example: %v", err)
	}
	ex := multiTenantExample{applicationSets: map[string]fleet.Filter{}}
	for _, file := range files {
		data, err := os.ReadFile(file)
		must(t, err)
		for i, doc := range bytes.Split(data, []byte("\n---")) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s #%d: %v", file, i, err)
			}
			var into any
			switch tm.Kind {
			case "Namespace":
				ex.namespaces = append(ex.namespaces, corev1.Namespace{})
				into = &ex.namespaces[len(ex.namespaces)-1]
			case "Registration":
				ex.registrations = append(ex.registrations, fleetv1.Registration{})
				into = &ex.registrations[len(ex.registrations)-1]
			case "Workload":
				ex.workloads = append(ex.workloads, fleetv1.Workload{})
				into = &ex.workloads[len(ex.workloads)-1]
			case "ApplicationSet":
				obj := &unstructured.Unstructured{}
				must(t, yaml.Unmarshal(doc, &obj.Object))
				generators, _, _ := unstructured.NestedSlice(obj.Object, "spec", "generators")
				for _, g := range generators {
					params, found, _ := unstructured.NestedStringMap(g.(map[string]any), "plugin", "input", "parameters")
					if found {
						ex.applicationSets[obj.GetName()] = fleet.Filter{Registrations: nonEmpty(params["registration"]), WorkloadNamespaces: nonEmpty(params["workloadNamespace"])}
					}
				}
				continue
			default:
				continue
			}
			if err := yaml.UnmarshalStrict(doc, into); err != nil {
				t.Fatalf("%s #%d: %v", file, i, err)
			}
		}
	}
	return ex
}

// The multi-tenant example keeps its tenants apart when a team labels its Cluster as another team's:
// a Cluster in team-b's namespace labelled team: a is registered by team-b's Registration only, its
// Argo CD Secret says team: b and project team-b, and the plugin pairs none of team-a's Workloads with
// it, for team-a's ApplicationSet or any other request.
func TestMultiTenantExampleIsolatesTenants(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := mgmt.Client
	ex := loadMultiTenantExample(t)
	for _, name := range []string{"team-a", "team-b"} {
		if _, ok := ex.applicationSets[name]; !ok {
			t.Fatalf("the example has no plugin ApplicationSet %s", name)
		}
	}

	for i := range ex.namespaces {
		if err := c.Create(ctx, ex.namespaces[i].DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	must(t, mgmt.EnsureNamespace(ctx, argoNS, nil))
	// a1 is team-a's own cluster; b1 is in team-b's namespace, labelled by a team-b user as team-a's.
	a1, b1 := types.NamespacedName{Namespace: "fleet-team-a", Name: "a1"}, types.NamespacedName{Namespace: "fleet-team-b", Name: "b1"}
	for _, key := range []types.NamespacedName{a1, b1} {
		w, err := mgmt.AddWorkload(ctx, key.Namespace, key.Name, testenv.ClusterOptions{Labels: map[string]string{"team": "a", "env": "prod"}})
		must(t, err)
		// Every team's namespaces exist on both, so either Registration could bind its credentials.
		for _, ns := range []string{"team-a-apps", "team-a-jobs", "team-b-apps"} {
			must(t, w.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		}
	}

	rm := startManager(t)
	defer rm.stop(t)
	for i := range ex.registrations {
		must(t, c.Create(ctx, ex.registrations[i].DeepCopy()))
	}
	// Each Cluster is reconciled once the manager sees every Registration, so what it is given below is
	// the whole answer, not the part written so far.
	testenv.Eventually(t, 20*time.Second, "Registrations cached", func() error {
		for _, reg := range ex.registrations {
			if err := rm.reg.Clusters.Client.Get(ctx, client.ObjectKeyFromObject(&reg), &fleetv1.Registration{}); err != nil {
				return err
			}
		}
		return nil
	})
	written := func(key types.NamespacedName) []corev1.Secret {
		t.Helper()
		list := &corev1.SecretList{}
		must(t, c.List(ctx, list, client.MatchingLabelsSelector{Selector: owned.ForCluster(key)}))
		return list.Items
	}
	// The controller registers both through its watches; once each has a Secret and the Registrations'
	// status has every result, nothing more is coming.
	testenv.Eventually(t, 30*time.Second, "both clusters registered", func() error {
		for _, key := range []types.NamespacedName{a1, b1} {
			if len(written(key)) == 0 {
				return fmt.Errorf("nothing written for %s yet", key)
			}
		}
		for _, reg := range ex.registrations {
			if got := registration(t, ctx, reg.Name); got.Status.Registered != 1 {
				return fmt.Errorf("Registration %s: %d registered", reg.Name, got.Status.Registered)
			}
		}
		return nil
	})
	describe := func(secrets []corev1.Secret) string {
		var out []string
		for _, s := range secrets {
			out = append(out, fmt.Sprintf("%s/%s by Registration %s (team=%q)", s.Namespace, s.Name, s.Labels[owned.LabelRegistration], s.Labels["team"]))
		}
		sort.Strings(out)
		return "[" + strings.Join(out, ", ") + "]"
	}
	for _, want := range []struct {
		cluster            types.NamespacedName
		registration, team string
	}{{a1, "team-a", "a"}, {b1, "team-b", "b"}} {
		secrets := written(want.cluster)
		if len(secrets) != 1 || secrets[0].Labels[owned.LabelRegistration] != want.registration {
			t.Errorf("Secrets written for %s: %s; want only Registration %s's", want.cluster, describe(secrets), want.registration)
			continue
		}
		s := secrets[0]
		if s.Labels["team"] != want.team || string(s.Data[argocd.KeyProject]) != want.registration {
			t.Errorf("%s's Argo CD Secret has team=%q and project %q, want %q and %q",
				want.cluster, s.Labels["team"], s.Data[argocd.KeyProject], want.team, want.registration)
		}
		// What an Argo CD cluster generator of team-a's would select on.
		if teamA := labels.SelectorFromSet(labels.Set{"team": "a"}); want.team != "a" && teamA.Matches(labels.Set(s.Labels)) {
			t.Errorf("a team=a cluster selector matches %s's Secret", want.cluster)
		}
	}

	// The plugin's answers, from the metadata of what was written and the example's Workloads.
	store := fleet.NewStore()
	secrets := &metav1.PartialObjectMetadataList{}
	secrets.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	must(t, c.List(ctx, secrets, client.MatchingLabelsSelector{Selector: owned.Selector()}))
	for i := range secrets.Items {
		store.Add(&secrets.Items[i])
	}
	for _, key := range []types.NamespacedName{a1, b1} {
		cluster := &clusterv1.Cluster{}
		must(t, c.Get(ctx, key, cluster))
		store.Add(cluster)
	}
	for i := range ex.workloads {
		store.Add(&ex.workloads[i])
	}
	regs := &fleetv1.RegistrationList{}
	must(t, c.List(ctx, regs))
	for i := range regs.Items {
		store.Add(&regs.Items[i])
	}
	nss := &corev1.NamespaceList{}
	must(t, c.List(ctx, nss))
	for i := range nss.Items {
		store.Add(&nss.Items[i])
	}
	snap := store.Snapshot()
	pairs := func(f fleet.Filter) []fleet.Pair {
		t.Helper()
		out, err := fleet.Pairs(snap.Clusters, snap.Workloads, f)
		must(t, err)
		return out
	}
	teamANamespace := ex.applicationSets["team-a"].WorkloadNamespaces[0]
	for name, f := range map[string]fleet.Filter{"ApplicationSet team-a": ex.applicationSets["team-a"], "any request": {}} {
		reachesA1 := false
		for _, p := range pairs(f) {
			if p.Workload.Namespace != teamANamespace {
				continue
			}
			key := types.NamespacedName{Namespace: p.Cluster.Namespace, Name: p.Cluster.Name}
			if key == b1 {
				t.Errorf("%s: team-a's Workload %s pairs with team-b's cluster %s", name, p.Workload.Name, key)
			}
			reachesA1 = reachesA1 || key == a1
		}
		if !reachesA1 {
			t.Errorf("%s: team-a's Workloads do not reach team-a's own cluster %s", name, a1)
		}
	}
	teamB := pairs(ex.applicationSets["team-b"])
	if len(teamB) == 0 {
		t.Errorf("ApplicationSet team-b: no pair; want team-b's Workloads on %s", b1)
	}
	for _, p := range teamB {
		if key := (types.NamespacedName{Namespace: p.Cluster.Namespace, Name: p.Cluster.Name}); key != b1 {
			t.Errorf("ApplicationSet team-b: Workload %s/%s pairs with %s", p.Workload.Namespace, p.Workload.Name, key)
		}
	}

	for i := range ex.registrations {
		must(t, client.IgnoreNotFound(c.Delete(ctx, &ex.registrations[i])))
	}
	testenv.Eventually(t, 30*time.Second, "Registrations removed", func() error {
		for _, reg := range ex.registrations {
			if err := c.Get(ctx, client.ObjectKeyFromObject(&reg), &fleetv1.Registration{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Registration %s: %v", reg.Name, err)
			}
		}
		return nil
	})
}

// nonEmpty is a filter's list of one value, or nil (no filter) for "".
func nonEmpty(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}
