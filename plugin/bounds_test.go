package plugin

import (
	"encoding/json"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// One Workload with 1 MiB of values and an everything selector, at 1,000 clusters, would be a 2 GB
// answer (values and valuesYAML per pair). It is refused from its measured size, and the refusal
// allocates a few copies of the values, not the answer.
func TestOversizedAnswerIsRefusedBeforeItIsBuilt(t *testing.T) {
	snap := &fleet.Snapshot{}
	for i := 0; i < 1000; i++ {
		snap.Clusters = append(snap.Clusters, fleet.Cluster{Namespace: "fleet", Name: fmt.Sprintf("c%04d", i), Ready: true,
			Server: "https://x:6443", Labels: map[string]string{"env": "prod", "n": fmt.Sprint(i)}})
	}
	values := map[string]any{}
	for i := 0; i < 1024; i++ {
		values[fmt.Sprintf("key%04d", i)] = strings.Repeat("v", 1024)
	}
	w, err := fleet.WorkloadFrom(workloadWithValues(t, values))
	if err != nil {
		t.Fatal(err)
	}
	snap.Workloads = []fleet.Workload{w}
	s := NewServer(&staticFleet{synced: true, snap: snap}, StaticTokens(token), logr.Discard(), 512<<20/4)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := do(t, s, "POST", "/api/v1/getparams.execute", "Bearer "+token, argoBody(""), nil)
	runtime.ReadMemStats(&after)
	if r.code != 422 || !strings.Contains(r.body["error"].(string), "--max-answer-bytes") || !strings.Contains(r.body["error"].(string), "clusterSelector") {
		t.Fatalf("status %d: %.300s", r.code, r.raw)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown >= 64<<20 {
		t.Fatalf("refusing the answer allocated %d MiB", grown>>20)
	}
	// The same check, before building, applies to Flux Operator's 900 KiB.
	runtime.ReadMemStats(&before)
	r = do(t, s, "GET", "/api/v1/flux/inputs", "Bearer "+token, nil, nil)
	runtime.ReadMemStats(&after)
	if r.code != 422 || !strings.Contains(r.body["error"].(string), "900 KiB") {
		t.Fatalf("flux: status %d: %.300s", r.code, r.raw)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown >= 64<<20 {
		t.Fatalf("refusing the Flux answer allocated %d MiB", grown>>20)
	}
	// A narrowed request within the limit is answered in full.
	r = do(t, s, "POST", "/api/v1/getparams.execute", "Bearer "+token, argoBody(`{"clusterSelector":"n in (1,2)"}`), nil)
	if r.code != 200 || len(pairNames(t, r)) != 2 {
		t.Fatalf("narrowed: status %d", r.code)
	}
}

// The answer's Content-Length is its measured size, exactly.
func TestContentLengthIsTheMeasuredSize(t *testing.T) {
	s := NewServer(&staticFleet{synced: true, snap: testFleet()}, StaticTokens(token), logr.Discard(), 0)
	for _, path := range []string{"/api/v1/flux/inputs", "/api/v1/flux/inputs?" + url.Values{"workloads": {"web"}}.Encode()} {
		r := do(t, s, "GET", path, "Bearer "+token, nil, nil)
		if r.code != 200 || r.header.Get("Content-Length") != fmt.Sprint(len(r.raw)) {
			t.Fatalf("%s: status %d, Content-Length %s for %d bytes", path, r.code, r.header.Get("Content-Length"), len(r.raw))
		}
	}
}

func workloadWithValues(t *testing.T, values map[string]any) *fleetv1.Workload {
	t.Helper()
	raw, err := json.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	return &fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "big"},
		Spec: fleetv1.WorkloadSpec{
			ClusterSelector: &metav1.LabelSelector{},
			Source:          fleetv1.WorkloadSource{RepoURL: "https://git/big", Path: "deploy", TargetRevision: "main"},
			Destination:     fleetv1.WorkloadDestination{Namespace: "big"},
			Values:          &apiextensionsv1.JSON{Raw: raw},
		},
	}
}

// An answer holding a cluster whose Secret lacks its published facts is a 503 (Argo CD keeps its
// Applications), not an answer without that cluster.
func TestIncompleteClusterIsA503(t *testing.T) {
	snap := testFleet()
	snap.Clusters[0].Incomplete = true
	s := NewServer(&staticFleet{synced: true, snap: snap}, StaticTokens(token), logr.Discard(), 0)
	if r := do(t, s, "POST", "/api/v1/getparams.execute", "Bearer "+token, argoBody(`{"workloads":["web"]}`), nil); r.code != 503 {
		t.Fatalf("status %d: %s", r.code, r.raw)
	}
	// A request that does not hold it is answered.
	if r := do(t, s, "POST", "/api/v1/getparams.execute", "Bearer "+token, argoBody(`{"workloads":["monitor"]}`), nil); r.code != 200 {
		t.Fatalf("status %d: %s", r.code, r.raw)
	}
}
