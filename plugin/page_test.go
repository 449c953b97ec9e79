package plugin

import (
	"net/url"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// The grid pairs a cluster that two Registrations register with a Workload that names the second one:
// one row, and the pair's cell (a snapshot holds one entry per Registration, and the row keeps the
// first). It also refuses a bad selector and window with a 400.
func TestGridPairsEveryRegistrationOfACluster(t *testing.T) {
	w, err := fleet.WorkloadFrom(&fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
		Spec: fleetv1.WorkloadSpec{ClusterSelector: &metav1.LabelSelector{}, Registration: "second",
			Source: fleetv1.WorkloadSource{RepoURL: "https://git.example.com/web", Path: "deploy"}, Destination: fleetv1.WorkloadDestination{Namespace: "web"}},
	})
	must(t, err)
	entry := func(reg string) fleet.Cluster {
		return fleet.Cluster{Namespace: "fleet", Name: "c1", Registration: reg, Ready: true, Labels: map[string]string{"env": "prod"}}
	}
	snap := &fleet.Snapshot{Clusters: []fleet.Cluster{entry("first"), entry("second")}, Workloads: []fleet.Workload{w}}
	page, err := NewPageServer(nil, nil, &generatedObjects{objects: map[objectKey]generatedEntry{}}, newWorkloadOfPair(), time.Minute, "", logr.Discard())
	must(t, err)
	q, err := parseGridQuery(url.Values{})
	must(t, err)
	grid := page.grid(snap, q)
	if grid.Total != 1 || len(grid.Clusters) != 1 {
		t.Fatalf("%d rows (total %d), want 1", len(grid.Clusters), grid.Total)
	}
	if cell := grid.Clusters[0].Cells[0]; cell.State != stateOutOfSync || cell.Reason != "not generated yet" {
		t.Fatalf("the pair's cell is %+v", cell)
	}
	for _, bad := range []url.Values{{"selector": {"env in (prod"}}, {"limit": {"0"}}, {"limit": {"501"}}, {"offset": {"-1"}}, {"offset": {"x"}}} {
		if _, err := parseGridQuery(bad); status(err) != 400 {
			t.Errorf("%v: %v (status %d), want a 400", bad, err, status(err))
		}
	}
}
