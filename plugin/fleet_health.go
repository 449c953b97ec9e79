package plugin

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

// The states a pair's generated object is counted under, the worst first.
const (
	stateDegraded    = "Degraded"
	stateMissing     = "Missing"
	stateOutOfSync   = "OutOfSync"
	stateProgressing = "Progressing"
	stateHealthy     = "Healthy"
)

// severity orders states for the not-healthy list and the summary: the worst first.
var severity = map[string]int{stateDegraded: 0, stateMissing: 1, stateOutOfSync: 2, stateProgressing: 3, stateHealthy: 4}

// Bounds of WorkloadFleet: nothing in a Workload's status grows with the fleet.
const (
	maxRevisions  = 5
	maxNotHealthy = 20
	maxReasonLen  = 200
)

// generated is what the status controller reads of the object a pair became: an Argo CD Application's
// status.sync and status.health, or a Flux Kustomization's or HelmRelease's Ready and Reconciling
// conditions and revisions. Nothing else of it is kept.
type generated struct {
	argo bool
	// Argo CD: status.sync.status, status.sync.revision, status.health.status and message.
	sync, revision, health, healthMessage string
	// Flux: the Ready condition (nil: none yet), Reconciling True, lastAppliedRevision and
	// lastAttemptedRevision.
	ready              *metav1.Condition
	reconciling        bool
	applied, attempted string
}

// pairHealth is one pair of a Workload as the status controller finds it.
type pairHealth struct {
	// cluster is the CAPI Cluster, "<namespace>/<name>".
	cluster string
	// object is what the pair became; nil when nothing was generated for it (yet).
	object *generated
	// since is when the pair was first seen without an object: a pair is Missing only once the grace
	// period has passed since.
	since time.Time
}

// classify is a pair's state, the reason for it (empty when healthy) and the revision it runs.
func classify(p pairHealth, now time.Time, grace time.Duration) (state, reason, revision string) {
	o := p.object
	if o == nil {
		if now.Sub(p.since) < grace {
			return stateOutOfSync, "not generated yet", ""
		}
		return stateMissing, fmt.Sprintf("nothing generated for it in %s", grace), ""
	}
	if o.argo {
		switch {
		case o.health == "Degraded":
			return stateDegraded, short("Degraded", o.healthMessage), o.revision
		case o.health == "Missing":
			return stateDegraded, short("resources missing", o.healthMessage), o.revision
		case o.sync == "OutOfSync":
			return stateOutOfSync, "OutOfSync", o.revision
		case o.sync == "" || o.sync == "Unknown" || o.health == "" || o.health == "Unknown":
			return stateOutOfSync, "not synced yet", o.revision
		case o.health == "Progressing" || o.health == "Suspended":
			return stateProgressing, short(o.health, o.healthMessage), o.revision
		}
		return stateHealthy, "", o.revision
	}
	switch {
	case o.ready == nil:
		return stateOutOfSync, "not applied yet", o.applied
	case o.reconciling || o.ready.Status == metav1.ConditionUnknown:
		return stateProgressing, short(o.ready.Reason, o.ready.Message), o.applied
	case o.ready.Status == metav1.ConditionFalse:
		return stateDegraded, short(o.ready.Reason, o.ready.Message), o.applied
	case o.applied == "":
		return stateOutOfSync, "not applied yet", ""
	case o.attempted != "" && o.attempted != o.applied:
		return stateOutOfSync, "applying " + o.attempted, o.applied
	}
	return stateHealthy, "", o.applied
}

// short is "reason: message", cut to a few words' length.
func short(reason, message string) string {
	out := reason
	if message = strings.Join(strings.Fields(message), " "); message != "" {
		out += ": " + message
	}
	if len(out) > maxReasonLen {
		out = out[:maxReasonLen] + "..."
	}
	return out
}

// fleetHealth aggregates a Workload's pairs: counts by state, the revision spread (at most 5, most common
// first), the worst 20 clusters that are not healthy and a one-line summary. It is nil when nothing was
// generated for any pair: then Argo CD or Flux is not (yet) using the Workload, and there is nothing to
// report.
func fleetHealth(pairs []pairHealth, now time.Time, grace time.Duration) (*fleetv1.WorkloadFleet, string) {
	generatedAny := false
	for _, p := range pairs {
		if p.object != nil {
			generatedAny = true
			break
		}
	}
	if !generatedAny {
		return nil, ""
	}
	out := &fleetv1.WorkloadFleet{}
	revisions := map[string]int32{}
	var notHealthy []fleetv1.ClusterState
	for _, p := range pairs {
		state, reason, revision := classify(p, now, grace)
		switch state {
		case stateHealthy:
			out.Healthy++
		case stateProgressing:
			out.Progressing++
		case stateOutOfSync:
			out.OutOfSync++
		case stateDegraded:
			out.Degraded++
		case stateMissing:
			out.Missing++
		}
		if revision != "" {
			revisions[revision]++
		}
		if state != stateHealthy {
			notHealthy = append(notHealthy, fleetv1.ClusterState{Cluster: p.cluster, State: state, Reason: reason})
		}
	}
	for rev, n := range revisions {
		out.Revisions = append(out.Revisions, fleetv1.RevisionCount{Revision: rev, Clusters: n})
	}
	slices.SortFunc(out.Revisions, func(a, b fleetv1.RevisionCount) int {
		return cmp.Or(cmp.Compare(b.Clusters, a.Clusters), cmp.Compare(a.Revision, b.Revision))
	})
	if len(out.Revisions) > 0 {
		out.Revision = out.Revisions[0].Revision
	}
	out.Revisions = out.Revisions[:min(len(out.Revisions), maxRevisions)]
	slices.SortFunc(notHealthy, func(a, b fleetv1.ClusterState) int {
		return cmp.Or(cmp.Compare(severity[a.State], severity[b.State]), cmp.Compare(a.Cluster, b.Cluster))
	})
	summary := ""
	switch {
	case len(pairs) == 0:
		summary = "no clusters"
	case len(notHealthy) == 0 && len(revisions) == 1:
		summary = fmt.Sprintf("all %d clusters healthy at %s", len(pairs), out.Revision)
	case len(notHealthy) == 0:
		summary = fmt.Sprintf("all %d clusters healthy, at %d revisions", len(pairs), len(revisions))
	default:
		first := notHealthy[0]
		summary = fmt.Sprintf("%s %s: %s", first.Cluster, first.State, first.Reason)
		if more := len(notHealthy) - 1; more > 0 {
			summary += fmt.Sprintf(" (and %d more not healthy)", more)
		}
	}
	out.NotHealthy = notHealthy[:min(len(notHealthy), maxNotHealthy)]
	return out, summary
}
