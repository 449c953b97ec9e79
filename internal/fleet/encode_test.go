package fleet

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// testFleet has what makes encoding tricky: a cluster registered twice, an unready one, overrides
// matching some clusters, and values with characters encoding/json escapes.
func testFleet(t *testing.T) *Snapshot {
	t.Helper()
	sel := func(s string) labels.Selector {
		out, err := labels.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	snap := &Snapshot{}
	for i := 0; i < 12; i++ {
		c := Cluster{
			Name: fmt.Sprintf("c%02d", i), Namespace: []string{"fleet-a", "fleet-b"}[i%2], ArgoCDName: fmt.Sprintf("fleet-c%02d", i),
			Server: fmt.Sprintf("https://10.0.0.%d:6443", i), KubernetesVersion: "v1.36.3", Ready: i != 5, Registration: "r1",
			Labels: map[string]string{"env": []string{"prod", "staging"}[i%2], "region": []string{"eu", "us", "ap"}[i%3]},
		}
		snap.Clusters = append(snap.Clusters, c.withFragment())
		if i == 4 { // the same cluster through a second Registration
			c.Registration, c.ArgoCDName = "r2", "other-c04"
			snap.Clusters = append(snap.Clusters, c.withFragment())
		}
	}
	sortClusters(snap.Clusters)
	for _, w := range []Workload{
		{Name: "api", Namespace: "apps", ClusterSelector: sel("env=prod"), RepoURL: "https://git.example.com/api.git", Path: "deploy", TargetRevision: "main",
			DestinationNamespace: "api", Values: map[string]any{"msg": "<b>&\"quoted\"</b>\n", "replicas": 2.0, "ünï": "cödé"},
			Overrides: []Override{{Selector: sel("region=eu"), Values: map[string]any{"replicas": 3.0}}, {Selector: sel("region in (eu,us)"), Values: map[string]any{"tier": map[string]any{"a": true}}}}},
		{Name: "web", Namespace: "apps", ClusterSelector: labels.Everything(), Chart: "web", TargetRevision: "1.2.3", DestinationNamespace: "web"},
		{Name: "none", Namespace: "apps"}, // no selector: no cluster
		{Name: "pinned", Namespace: "ops", ClusterSelector: labels.Everything(), Registration: "r2", Path: "p"},
	} {
		w.frags = newWorkloadFragments(&w)
		snap.Workloads = append(snap.Workloads, w)
	}
	return snap
}

func sortClusters(cs []Cluster) {
	for i := range cs {
		for j := i + 1; j < len(cs); j++ {
			if clusterLess(cs[j], cs[i]) {
				cs[i], cs[j] = cs[j], cs[i]
			}
		}
	}
}

// The assembled answer is byte for byte what encoding/json makes of the same pairs, for every filter
// and both protocols, so the fast path cannot drift from the reference implementation (Pairs).
func TestAppendPairsEqualsEncodingJSON(t *testing.T) {
	snap := testFleet(t)
	eu, _ := labels.Parse("region=eu")
	for _, f := range []Filter{
		{}, {ReadyOnly: true}, {ClusterSelectors: []labels.Selector{eu}}, {Registrations: []string{"r2"}},
		{Workloads: []types.NamespacedName{{Namespace: "apps", Name: "web"}}}, {Registrations: []string{}},
		{WorkloadNamespaces: []string{"ops"}, ReadyOnly: true}, {Workloads: []types.NamespacedName{{Name: "web"}}},
		{WorkloadNamespaces: []string{}}, {ClusterSelectors: []labels.Selector{eu, labels.Nothing()}},
	} {
		pairs, err := Pairs(snap.Clusters, snap.Workloads, f)
		if err != nil {
			t.Fatal(err)
		}
		if pairs == nil {
			pairs = []Pair{}
		}
		want, _ := json.Marshal(pairs)
		got, n, err := snap.AppendPairs(nil, f, ArgoCD)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || n != len(pairs) {
			t.Errorf("filter %+v: %d pairs\ngot  %s\nwant %s", f, n, got, want)
		}
		if c := snap.CountPairs(f); c != len(pairs) {
			t.Errorf("filter %+v: CountPairs %d, want %d", f, c, len(pairs))
		}
		// The measured size is exactly what is written.
		answer, err := snap.Answer(f, ArgoCD)
		if err != nil || answer.Size() != int64(len(want)) || answer.Len() != len(pairs) {
			t.Fatalf("filter %+v: Answer of %d bytes, %d pairs, %v; want %d, %d", f, answer.Size(), answer.Len(), err, len(want), len(pairs))
		}
		answer.Release()
		type fluxInput struct {
			ID string `json:"id"`
			Pair
		}
		inputs := []fluxInput{}
		for _, p := range pairs {
			inputs = append(inputs, fluxInput{p.Name, p})
		}
		want, _ = json.Marshal(inputs)
		got, _, _ = snap.AppendPairs(nil, f, Flux)
		if !bytes.Equal(got, want) {
			t.Errorf("filter %+v (flux):\ngot  %s\nwant %s", f, got, want)
		}
		if answer, _ := snap.Answer(f, Flux); answer.Size() != int64(len(want)) {
			t.Errorf("filter %+v (flux): Answer of %d bytes, want %d", f, answer.Size(), len(want))
		}
	}
	// A second answer from the same snapshot reuses the cached values fragments and is identical.
	first, _, _ := snap.AppendPairs(nil, Filter{}, ArgoCD)
	again, _, _ := snap.AppendPairs(nil, Filter{}, ArgoCD)
	if !bytes.Equal(first, again) {
		t.Error("answers from one snapshot differ")
	}
}

func TestAppendJSONStringEqualsEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain-name-1a2b", "a<b", "x>y", "a&b", `q"uote`, `back\slash`, "tab\t", "ünïcode", "\u2028", "\x7f"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}

// Pair names become Application names: the allocation-free version must give exactly the names the
// original implementation (kept here as the reference) gave, or Argo CD would replace Applications.
func TestPairNameUnchanged(t *testing.T) {
	reference := func(workloadNamespace, workload, clusterNamespace, cluster string) string {
		sum := sha256.Sum256([]byte(workloadNamespace + "/" + workload + "\x00" + clusterNamespace + "/" + cluster))
		hash := hex.EncodeToString(sum[:4])
		base := strings.ToLower(workload + "-" + cluster)
		if max := 63 - len(hash) - 1; len(base) > max {
			base = strings.TrimRight(base[:max], "-.")
		}
		base = strings.ReplaceAll(base, ".", "-")
		return base + "-" + hash
	}
	long := strings.Repeat("abcdefghij", 7)
	for _, in := range [][4]string{
		{"apps", "podinfo", "fleet", "edge-eu"},
		{"apps", "Web.App", "fleet.x", "c.1"},
		{"a", long, "b", long},
		{"a", strings.Repeat("x", 50) + "-.", "b", "c"},
		{"a", strings.Repeat("x", 53) + ".y", "b", "cluster"},
		{"", "", "", ""},
	} {
		want := reference(in[0], in[1], in[2], in[3])
		if got := PairName(in[0], in[1], in[2], in[3]); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
		if n := pairNameLen(in[1], in[3]); n != len(want) {
			t.Errorf("%q: pairNameLen %d, want %d", in, n, len(want))
		}
	}
}
