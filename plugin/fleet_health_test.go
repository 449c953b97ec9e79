package plugin

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

// classify: every state a generated Argo CD Application or Flux object can be counted under, and the
// grace period before a pair with nothing generated is Missing.
func TestClassify(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	const grace = 2 * time.Minute
	argo := func(sync, health, msg string) *generated {
		return &generated{argo: true, sync: sync, health: health, healthMessage: msg, revision: "abc123"}
	}
	flux := func(status metav1.ConditionStatus, reason string, reconciling bool, applied, attempted string) *generated {
		g := &generated{reconciling: reconciling, applied: applied, attempted: attempted}
		if status != "" {
			g.ready = &metav1.Condition{Type: "Ready", Status: status, Reason: reason, Message: "the message"}
		}
		return g
	}
	for _, tc := range []struct {
		name                   string
		object                 *generated
		since                  time.Duration // before now
		state, reason, revison string
	}{
		{"nothing generated, within the grace period", nil, time.Minute, stateOutOfSync, "not generated yet", ""},
		{"nothing generated, past the grace period", nil, 3 * time.Minute, stateMissing, "nothing generated for it in 2m0s", ""},
		{"Argo CD synced and healthy", argo("Synced", "Healthy", ""), 0, stateHealthy, "", "abc123"},
		{"Argo CD degraded", argo("Synced", "Degraded", "Deployment web:  exceeded\nits progress deadline"), 0, stateDegraded, "Degraded: Deployment web: exceeded its progress deadline", "abc123"},
		{"Argo CD resources missing", argo("OutOfSync", "Missing", ""), 0, stateDegraded, "resources missing", "abc123"},
		{"Argo CD out of sync", argo("OutOfSync", "Healthy", ""), 0, stateOutOfSync, "OutOfSync", "abc123"},
		{"Argo CD not reconciled yet", argo("", "", ""), 0, stateOutOfSync, "not synced yet", "abc123"},
		{"Argo CD progressing", argo("Synced", "Progressing", "waiting for rollout"), 0, stateProgressing, "Progressing: waiting for rollout", "abc123"},
		{"Argo CD suspended", argo("Synced", "Suspended", ""), 0, stateProgressing, "Suspended", "abc123"},
		{"Flux applied and ready", flux(metav1.ConditionTrue, "ReconciliationSucceeded", false, "main@sha1:abc", "main@sha1:abc"), 0, stateHealthy, "", "main@sha1:abc"},
		{"Flux failed", flux(metav1.ConditionFalse, "HealthCheckFailed", false, "main@sha1:abc", "main@sha1:def"), 0, stateDegraded, "HealthCheckFailed: the message", "main@sha1:abc"},
		{"Flux reconciling", flux(metav1.ConditionFalse, "Progressing", true, "main@sha1:abc", "main@sha1:def"), 0, stateProgressing, "Progressing: the message", "main@sha1:abc"},
		{"Flux unknown", flux(metav1.ConditionUnknown, "Progressing", false, "", ""), 0, stateProgressing, "Progressing: the message", ""},
		{"Flux no Ready condition yet", flux("", "", false, "", ""), 0, stateOutOfSync, "not applied yet", ""},
		{"Flux ready, never applied", flux(metav1.ConditionTrue, "ReconciliationSucceeded", false, "", ""), 0, stateOutOfSync, "not applied yet", ""},
		{"Flux ready at an older revision than attempted", flux(metav1.ConditionTrue, "ReconciliationSucceeded", false, "main@sha1:abc", "main@sha1:def"), 0, stateOutOfSync, "applying main@sha1:def", "main@sha1:abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, reason, revision := classify(pairHealth{cluster: "fleet/c1", object: tc.object, since: now.Add(-tc.since)}, now, grace)
			if state != tc.state || reason != tc.reason || revision != tc.revison {
				t.Fatalf("got %q %q %q, want %q %q %q", state, reason, revision, tc.state, tc.reason, tc.revison)
			}
		})
	}
}

// fleetHealth: the counts, the revision spread (most common first, at most 5), the 20 worst clusters
// and the summary; and its size does not grow with the fleet.
func TestFleetHealth(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	const grace = 2 * time.Minute
	healthy := func(cluster, rev string) pairHealth {
		return pairHealth{cluster: cluster, object: &generated{argo: true, sync: "Synced", health: "Healthy", revision: rev}}
	}
	degraded := func(cluster string) pairHealth {
		return pairHealth{cluster: cluster, object: &generated{argo: true, sync: "Synced", health: "Degraded", healthMessage: "crash loop", revision: "v2"}}
	}
	missing := func(cluster string) pairHealth { return pairHealth{cluster: cluster, since: now.Add(-time.Hour)} }

	for _, tc := range []struct {
		name    string
		pairs   []pairHealth
		want    *fleetv1.WorkloadFleet
		summary string
	}{
		{name: "no pairs", pairs: nil},
		{name: "nothing generated for any pair: nothing to report", pairs: []pairHealth{missing("fleet/a"), missing("fleet/b")}},
		{name: "all healthy at one revision", pairs: []pairHealth{healthy("fleet/a", "v1"), healthy("fleet/b", "v1")},
			want:    &fleetv1.WorkloadFleet{Healthy: 2, Revision: "v1", Revisions: []fleetv1.RevisionCount{{Revision: "v1", Clusters: 2}}},
			summary: "all 2 clusters healthy at v1"},
		{name: "all healthy at two revisions", pairs: []pairHealth{healthy("fleet/a", "v1"), healthy("fleet/b", "v2"), healthy("fleet/c", "v2")},
			want:    &fleetv1.WorkloadFleet{Healthy: 3, Revision: "v2", Revisions: []fleetv1.RevisionCount{{Revision: "v2", Clusters: 2}, {Revision: "v1", Clusters: 1}}},
			summary: "all 3 clusters healthy, at 2 revisions"},
		{name: "the worst first", pairs: []pairHealth{healthy("fleet/a", "v1"), missing("fleet/z"), degraded("fleet/y"), degraded("fleet/b")},
			want: &fleetv1.WorkloadFleet{Healthy: 1, Degraded: 2, Missing: 1, Revision: "v2",
				Revisions: []fleetv1.RevisionCount{{Revision: "v2", Clusters: 2}, {Revision: "v1", Clusters: 1}},
				NotHealthy: []fleetv1.ClusterState{{Cluster: "fleet/b", State: "Degraded", Reason: "Degraded: crash loop"},
					{Cluster: "fleet/y", State: "Degraded", Reason: "Degraded: crash loop"}, {Cluster: "fleet/z", State: "Missing", Reason: "nothing generated for it in 2m0s"}}},
			summary: "fleet/b Degraded: Degraded: crash loop (and 2 more not healthy)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, summary := fleetHealth(tc.pairs, now, grace)
			if !reflect.DeepEqual(got, tc.want) || summary != tc.summary {
				t.Fatalf("got %+v %q\nwant %+v %q", got, summary, tc.want, tc.summary)
			}
		})
	}

	t.Run("10,000 clusters at 12 revisions, half of them degraded: bounded", func(t *testing.T) {
		var pairs []pairHealth
		for i := range 10000 {
			p := healthy(fmt.Sprintf("fleet/c-%05d", i), fmt.Sprintf("v%d", i%12))
			if i%2 == 1 {
				p = degraded(fmt.Sprintf("fleet/c-%05d", i))
				p.object.healthMessage = strings.Repeat("a very long message ", 100)
			}
			pairs = append(pairs, p)
		}
		got, summary := fleetHealth(pairs, now, grace)
		if got.Healthy != 5000 || got.Degraded != 5000 || len(got.Revisions) != 5 || len(got.NotHealthy) != 20 {
			t.Fatalf("counts %d/%d, %d revisions, %d not healthy", got.Healthy, got.Degraded, len(got.Revisions), len(got.NotHealthy))
		}
		if got.Revisions[0] != (fleetv1.RevisionCount{Revision: "v2", Clusters: 5000 + 834}) { // the degraded, and the healthy at v2
			t.Fatalf("top revision %+v", got.Revisions[0])
		}
		if !strings.HasSuffix(summary, "(and 4999 more not healthy)") || got.NotHealthy[0].Cluster != "fleet/c-00001" {
			t.Fatalf("summary %q, first %+v", summary, got.NotHealthy[0])
		}
		raw, _ := json.Marshal(got)
		if len(raw) > 8<<10 {
			t.Fatalf("the fleet status is %d bytes", len(raw))
		}
		t.Logf("the fleet status of 10,000 clusters is %d bytes", len(raw))
	})
}
