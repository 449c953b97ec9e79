package plugin

import (
	"encoding/json"
	"net/url"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// A provider is fleetbridge's when its spec.url is a configured base URL followed by the Flux endpoint's
// path: same scheme, host (any case, trailing dot) and port (a default one may be left out), and the
// base's path prefix.
func TestFluxEndpointsMatch(t *testing.T) {
	endpoints, err := ParseFluxEndpoints([]string{
		"http://fleetbridge-plugin.fleetbridge-system.svc:8090",
		"https://fleet.example.com/fleetbridge/",
		"http://[::1]:8090",
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		url   string
		match bool
		query string
	}{
		{"http://fleetbridge-plugin.fleetbridge-system.svc:8090/api/v1/flux/inputs?workloadNamespace=team-a", true, "workloadNamespace=team-a"},
		{"HTTP://Fleetbridge-Plugin.fleetbridge-system.svc.:8090/api/v1/flux/inputs", true, ""},
		{"https://fleet.example.com/fleetbridge/api/v1/flux/inputs?clusterSelector=env%3Dprod", true, "clusterSelector=env%3Dprod"},
		{"https://fleet.example.com:443/fleetbridge/api/v1/flux/inputs", true, ""},
		{"http://[0:0::1]:8090/api/v1/flux/inputs", true, ""},
		{"http://fleetbridge-plugin.fleetbridge-system.svc:8091/api/v1/flux/inputs", false, ""},
		{"https://fleetbridge-plugin.fleetbridge-system.svc:8090/api/v1/flux/inputs", false, ""},
		{"http://fleetbridge-plugin.other.svc:8090/api/v1/flux/inputs", false, ""},
		{"https://fleet.example.com/api/v1/flux/inputs", false, ""},
		{"https://fleet.example.com/fleetbridge/api/v1/flux/inputs/more", false, ""},
		{"http://fleetbridge-plugin.fleetbridge-system.svc:8090/api/v1/getparams.execute", false, ""},
		{"not a url\x7f", false, ""},
	}
	for _, tc := range cases {
		q, ok := endpoints.Match(tc.url)
		if ok != tc.match || (ok && q != tc.query) {
			t.Errorf("Match(%q) = %q, %v; want %q, %v", tc.url, q, ok, tc.query, tc.match)
		}
	}
	for _, bad := range []string{"fleetbridge:8090", "ftp://x", "http://x/?a=b", "http:///path"} {
		if _, err := ParseFluxEndpoints([]string{bad}); err == nil {
			t.Errorf("ParseFluxEndpoints(%q) accepted it", bad)
		}
	}
}

// droppedPairs counts, per Workload, exactly the inputs that follow the limit in the answer the server
// sends, whatever the limit.
func TestDroppedPairsFollowTheAnswer(t *testing.T) {
	snap := testFleet()
	q, err := parseFluxQuery(url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	filter, err := q.filter(AdminScope(), snap)
	if err != nil {
		t.Fatal(err)
	}
	enc, n, err := snap.AppendPairs(nil, filter, fleet.Flux)
	if err != nil {
		t.Fatal(err)
	}
	var inputs []struct {
		Workload struct{ Name, Namespace string }
	}
	if err := json.Unmarshal(enc, &inputs); err != nil {
		t.Fatal(err)
	}
	if n < 4 || len(inputs) != n {
		t.Fatalf("test fleet answers %d inputs", n)
	}
	answer, err := snap.Answer(filter, fleet.Flux)
	if err != nil {
		t.Fatal(err)
	}
	runs := answer.WorkloadRuns()
	answer.Release()
	for limit := 0; limit <= n+1; limit++ {
		want := map[types.NamespacedName]int{}
		for _, in := range inputs[min(limit, n):] {
			want[types.NamespacedName{Namespace: in.Workload.Namespace, Name: in.Workload.Name}]++
		}
		got := droppedPairs(runs, limit)
		if len(got) != len(want) {
			t.Fatalf("limit %d: dropped %v, want %v", limit, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("limit %d: dropped %v, want %v", limit, got, want)
			}
		}
	}
}
