package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// The synthetic fleet of docs/performance.md, the same one hack/conformance feeds Argo CD's matrix
// generator: n clusters labelled env (half prod), region and team, and 20 Workloads selecting env=prod,
// so the answer has n/2*20 pairs. Objects go into a real Store, as informer events would put them.
func syntheticStore(n int) *fleet.Store {
	store := fleet.NewStore()
	store.Add(&fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}, Spec: fleetv1.RegistrationSpec{ArgoCD: &fleetv1.ArgoCDTarget{Namespace: "argocd"}}})
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("cluster-%05d", i)
		labels := map[string]string{
			"env":    []string{"prod", "staging"}[i%2],
			"region": []string{"eu", "us", "ap", "sa"}[i%4],
			"team":   fmt.Sprintf("team-%d", i%10),
		}
		capi := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name, Labels: labels, ResourceVersion: "1"}}
		rec := owned.Record{Registration: "fleet", Cluster: types.NamespacedName{Namespace: "fleet", Name: name}, Output: owned.OutputArgoCD,
			Server: fmt.Sprintf("https://10.%d.%d.%d:6443", i/65536%256, i/256%256, i%256), ArgoCDName: "fleet-" + name,
			KubernetesVersion: "v1.36.3", Reachable: true}
		secret := fleet.SecretMetadata()
		secret.ObjectMeta = metav1.ObjectMeta{Namespace: "argocd", Name: "fleetbridge-fleet-" + name, Labels: rec.Labels(),
			Annotations: rec.Annotations(), ResourceVersion: "1"}
		store.Add(capi)
		store.Add(secret)
	}
	for w := 0; w < 20; w++ {
		name := fmt.Sprintf("workload-%02d", w)
		store.Add(&fleetv1.Workload{
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name, ResourceVersion: "1"},
			Spec: fleetv1.WorkloadSpec{
				ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
				Source:          fleetv1.WorkloadSource{RepoURL: fmt.Sprintf("https://git.example.com/apps/%s.git", name), Path: "deploy", TargetRevision: "main"},
				Destination:     fleetv1.WorkloadDestination{Namespace: name},
				Values:          &apiextensionsv1.JSON{Raw: []byte(`{"replicaCount":2,"image":{"tag":"1.0.0"}}`)},
				Overrides: []fleetv1.WorkloadOverride{{
					ClusterSelector: metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
					Values:          &apiextensionsv1.JSON{Raw: []byte(`{"ingress":{"className":"nginx-eu"}}`)},
				}},
			},
		})
	}
	return store
}

// syncedStore is a Store whose informers are not running: the benchmark fills it directly.
type syncedStore struct{ *fleet.Store }

func (syncedStore) Synced() bool { return true }

// countingWriter is an http.ResponseWriter that keeps nothing, so the benchmark measures the server.
type countingWriter struct {
	header http.Header
	code   int
	n      int
}

func (w *countingWriter) Header() http.Header         { return w.header }
func (w *countingWriter) WriteHeader(code int)        { w.code = code }
func (w *countingWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// BenchmarkPluginAnswer is one Argo CD plugin generator call through the HTTP handler, full encoding
// included, against fleets of 1,000 and 10,000 clusters x 20 Workloads (10,000 and 100,000 pairs).
func BenchmarkPluginAnswer(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		store := syntheticStore(n)
		srv := NewServer(syncedStore{store}, StaticTokens("bench"), logr.Discard(), 0)
		body := []byte(`{"applicationSetName":"bench","input":{"parameters":{}}}`)
		for _, gz := range []bool{false, true} {
			b.Run(fmt.Sprintf("clusters=%d/gzip=%t", n, gz), func(b *testing.B) {
				w := &countingWriter{}
				serve := func() {
					req, _ := http.NewRequest(http.MethodPost, "/api/v1/getparams.execute", bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer bench")
					if gz {
						req.Header.Set("Accept-Encoding", "gzip")
					}
					*w = countingWriter{header: http.Header{}}
					srv.Handler().ServeHTTP(w, req)
					if w.code != http.StatusOK {
						b.Fatalf("status %d", w.code)
					}
				}
				serve() // the first answer encodes each workload's values once; later ones reuse them
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					serve()
				}
				b.ReportMetric(float64(w.n), "resp-bytes")
				b.ReportMetric(float64(store.Snapshot().CountPairs(fleet.Filter{})), "pairs")
			})
		}
	}
}

// BenchmarkEncodingJSONFloor is encoding/json marshalling the same finished pairs as maps: the floor a
// server that builds maps per request cannot go below.
func BenchmarkEncodingJSONFloor(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		snap := syntheticStore(n).Snapshot()
		raw, _, err := snap.AppendPairs(nil, fleet.Filter{}, fleet.ArgoCD)
		if err != nil {
			b.Fatal(err)
		}
		var maps []map[string]any
		if err := json.Unmarshal(raw, &maps); err != nil {
			b.Fatal(err)
		}
		answer := map[string]any{"output": map[string]any{"parameters": maps}}
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			var out []byte
			b.ReportAllocs()
			for b.Loop() {
				out, _ = json.Marshal(answer)
			}
			b.ReportMetric(float64(len(out)), "resp-bytes")
			b.ReportMetric(float64(len(maps)), "pairs")
		})
	}
}

// BenchmarkSnapshotAfterChange is the cost of the next answer's snapshot after one cluster changed:
// only that cluster is converted and encoded again.
func BenchmarkSnapshotAfterChange(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		store := syntheticStore(n)
		store.Snapshot()
		capi := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "cluster-00000",
			Labels: map[string]string{"env": "prod", "region": "eu", "team": "team-0"}}}
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			rv := 1
			for b.Loop() {
				rv++
				capi.ResourceVersion = fmt.Sprint(rv)
				store.Add(capi)
				store.Snapshot()
			}
		})
	}
}

// BenchmarkFleetPage is the fleet page's first HTML render and its JSON, through the HTTP handler, at
// 1,000 clusters x 20 Workloads (the synthetic fleet: 10,000 pairs, each with a generated Application
// in the watcher's index): the first window of 100 rows, and the largest window, 500.
func BenchmarkFleetPage(b *testing.B) {
	store := syntheticStore(1000)
	generated := &generatedObjects{objects: map[objectKey]generatedEntry{}, byPair: map[string]map[objectKey]bool{},
		byName: map[string]map[objectKey]bool{}, watched: map[schema.GroupVersionKind]bool{}, writesTo: store.WritesTo}
	for i, ref := range store.Snapshot().PairRefs(fleet.Filter{}) {
		health := []string{"Healthy", "Healthy", "Healthy", "Progressing", "Degraded"}[i%5]
		app := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
			"metadata": map[string]any{"namespace": "argocd", "name": ref.Name, "labels": map[string]any{PairLabel: ref.Name}},
			"status":   map[string]any{"sync": map[string]any{"status": "Synced", "revision": "abc123"}, "health": map[string]any{"status": health}},
		}}
		generated.update("Application", true, app)
	}
	page, err := NewPageServer(syncedStore{store}, store, generated, newWorkloadOfPair(), DefaultMissingGrace, "https://argocd.example.com", logr.Discard())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"html/first-100-rows", "/"},
		{"json/first-100-rows", "/api/v1/grid"},
		{"json/500-rows", "/api/v1/grid?limit=500"},
		{"json/selector-and-search", "/api/v1/grid?selector=region%3Deu&q=cluster-00"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := &countingWriter{}
			serve := func() {
				req, _ := http.NewRequest(http.MethodGet, tc.path, nil)
				*w = countingWriter{header: http.Header{}}
				page.Handler().ServeHTTP(w, req)
				if w.code != http.StatusOK && w.code != 0 {
					b.Fatalf("status %d", w.code)
				}
			}
			serve()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				serve()
			}
			b.ReportMetric(float64(w.n), "resp-bytes")
		})
	}
}
