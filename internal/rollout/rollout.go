// Package rollout owns the decisions of a fleet rollout, as pure functions: which wave each cluster is
// in, whether a wave is promoted, holds or halts, and which generation of a Workload each pair carries.
// It reads nothing and writes nothing; the controllers that will drive Workload rollouts call it.
package rollout

import (
	"hash/fnv"
	"math"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Wave is one step of a rollout: the clusters its selector matches among those no earlier wave took
// (every remaining cluster when Selector is nil), of which Percent are taken (100 when 0).
type Wave struct {
	Name     string
	Selector labels.Selector
	Percent  int
}

// Cluster is what wave assignment reads of a cluster.
type Cluster struct {
	Key    types.NamespacedName
	Labels map[string]string
}

// Assign puts every cluster in a wave: the index of the first wave that takes it, or len(waves) for the
// implicit last wave of the clusters no wave takes. A wave's percentage is taken by a stable hash of the
// cluster and the wave's name, cluster by cluster, not as a share of a count: adding or removing a
// cluster never moves another one between waves, and the same clusters always go first.
func Assign(waves []Wave, clusters []Cluster) map[types.NamespacedName]int {
	out := make(map[types.NamespacedName]int, len(clusters))
	for _, c := range clusters {
		out[c.Key] = waveOf(waves, c)
	}
	return out
}

func waveOf(waves []Wave, c Cluster) int {
	for i, w := range waves {
		if w.Selector != nil && !w.Selector.Matches(labels.Set(c.Labels)) {
			continue
		}
		if w.Percent <= 0 || w.Percent >= 100 || bucket(w.Name, c.Key) < float64(w.Percent)/100 {
			return i
		}
	}
	return len(waves)
}

// bucket is a cluster's stable place in [0, 1) for one wave.
func bucket(wave string, cluster types.NamespacedName) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(wave))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(cluster.Namespace))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(cluster.Name))
	return float64(h.Sum64()>>11) / float64(uint64(1)<<53)
}

// PairHealth is a pair's state at the generation being rolled out.
type PairHealth int

const (
	// Pending: not at the new generation yet, or at it and not yet healthy or failed.
	Pending PairHealth = iota
	// Healthy at the new generation.
	Healthy
	// Unhealthy at the new generation: Degraded, or failed.
	Unhealthy
)

// WaveState is a wave's state in a rollout.
type WaveState string

const (
	WavePending     WaveState = "Pending"
	WaveProgressing WaveState = "Progressing"
	WaveSoaking     WaveState = "Soaking"
	WaveComplete    WaveState = "Complete"
	WaveHalted      WaveState = "Halted"
)

// Budget is a wave's maxUnhealthy: a count, or a percentage of the wave's clusters (rounded down).
type Budget struct {
	Count   int
	Percent int
}

// Allowed is how many of n clusters may be unhealthy.
func (b Budget) Allowed(n int) int {
	if b.Percent > 0 {
		return int(math.Floor(float64(n) * float64(b.Percent) / 100))
	}
	return b.Count
}

// Decision is what a wave's pairs say about the wave now.
type Decision struct {
	State WaveState
	// HealthySince is when the wave became healthy enough (kept from the last decision while it stays
	// so); SoakEnds is when it is promoted if it stays so.
	HealthySince, SoakEnds time.Time
	// Unhealthy counts the wave's unhealthy pairs; Healthy its healthy ones.
	Healthy, Unhealthy int
}

// Decide is a wave's state from its pairs' health at the new generation. A wave breaching maxUnhealthy
// halts the rollout; a wave whose every pair is healthy (but for at most maxUnhealthy unhealthy ones)
// soaks from the moment it became so, and completes once it has stayed so for soak. healthySince is the
// HealthySince of the last decision (zero when it was not healthy). An empty wave is complete.
func Decide(pairs []PairHealth, budget Budget, soak time.Duration, healthySince, now time.Time) Decision {
	d := Decision{}
	for _, p := range pairs {
		switch p {
		case Healthy:
			d.Healthy++
		case Unhealthy:
			d.Unhealthy++
		}
	}
	allowed := budget.Allowed(len(pairs))
	switch {
	case len(pairs) == 0:
		d.State = WaveComplete
	case d.Unhealthy > allowed:
		d.State = WaveHalted
	case d.Healthy+d.Unhealthy < len(pairs):
		d.State = WaveProgressing
	default:
		if healthySince.IsZero() {
			healthySince = now
		}
		d.HealthySince, d.SoakEnds = healthySince, healthySince.Add(soak)
		d.State = WaveSoaking
		if !now.Before(d.SoakEnds) {
			d.State = WaveComplete
		}
	}
	return d
}

// Generation chooses the generation a pair carries. A pair in a promoted wave (wave <= promoted, the
// last wave allowed to run the new generation) carries newGen. Any other pair keeps what it has: the
// newer of the last generation that completed on it and the one it carries, so it never moves
// backwards (a rollout that an edit superseded leaves a pair at the generation it reached). A pair with
// neither (a cluster that joined during the rollout) carries previous, the generation the rollout
// started from, as the rest of its wave does; the first generation of a Workload (previous 0) goes
// everywhere at once, since there is nothing older to keep.
func Generation(wave, promoted int, newGen, previous, lastCompleted, carried int64) int64 {
	if wave <= promoted {
		return newGen
	}
	if g := max(lastCompleted, carried); g > 0 {
		return min(g, newGen)
	}
	if previous > 0 {
		return previous
	}
	return newGen
}
