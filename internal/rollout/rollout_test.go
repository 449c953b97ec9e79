package rollout

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

func clusters(n int, region func(i int) string) []Cluster {
	out := make([]Cluster, n)
	for i := range out {
		out[i] = Cluster{Key: types.NamespacedName{Namespace: "fleet", Name: fmt.Sprintf("c-%04d", i)}, Labels: map[string]string{"region": region(i)}}
	}
	return out
}

// Assign: a canary by label, then a percentage of the rest, then a region, then the implicit last wave;
// stable under churn (adding or removing clusters never moves another), and the percentage is about
// right.
func TestAssign(t *testing.T) {
	canary := labels.SelectorFromSet(labels.Set{"region": "canary"})
	eu := labels.SelectorFromSet(labels.Set{"region": "eu"})
	waves := []Wave{{Name: "canary", Selector: canary}, {Name: "ten-percent", Percent: 10}, {Name: "eu", Selector: eu}}
	region := func(i int) string {
		return []string{"canary", "eu", "us", "ap", "eu", "us", "ap", "eu", "us", "ap"}[i%10]
	}
	fleet := clusters(2000, region)
	got := Assign(waves, fleet)
	counts := make([]int, len(waves)+1)
	for _, c := range fleet {
		w := got[c.Key]
		counts[w]++
		switch {
		case c.Labels["region"] == "canary" && w != 0:
			t.Fatalf("%s (canary) is in wave %d", c.Key, w)
		case c.Labels["region"] != "canary" && w == 0:
			t.Fatalf("%s (%s) is in the canary wave", c.Key, c.Labels["region"])
		case w == 2 && c.Labels["region"] != "eu":
			t.Fatalf("%s (%s) is in the eu wave", c.Key, c.Labels["region"])
		case w == 3 && c.Labels["region"] == "eu":
			t.Fatalf("%s (eu) is in the last wave", c.Key)
		}
	}
	if counts[0] != 200 || counts[1] < 130 || counts[1] > 230 || counts[0]+counts[1]+counts[2]+counts[3] != 2000 {
		t.Fatalf("wave sizes %v (want 200 canaries and about 10%% of the other 1,800 in wave 1)", counts)
	}
	// Churn: a thousand more clusters and half the old ones gone; every remaining cluster keeps its wave.
	churned := append(clusters(3000, region)[2000:], fleet[:1000]...)
	again := Assign(waves, churned)
	for _, c := range fleet[:1000] {
		if again[c.Key] != got[c.Key] {
			t.Fatalf("%s moved from wave %d to %d when other clusters came and went", c.Key, got[c.Key], again[c.Key])
		}
	}
	// No waves: everything is in the implicit last wave.
	if w := Assign(nil, fleet[:1])[fleet[0].Key]; w != 0 {
		t.Fatalf("without waves, wave %d", w)
	}
}

// Decide: every state of a wave, the budget as a count and as a percentage, and the soak clock.
func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	const soak = 10 * time.Minute
	h, u, p := Healthy, Unhealthy, Pending
	for _, tc := range []struct {
		name      string
		pairs     []PairHealth
		budget    Budget
		since     time.Time
		now       time.Time
		want      WaveState
		wantSince time.Time
	}{
		{"empty wave", nil, Budget{}, time.Time{}, t0, WaveComplete, time.Time{}},
		{"some pending", []PairHealth{h, p, h}, Budget{}, time.Time{}, t0, WaveProgressing, time.Time{}},
		{"all healthy: the soak starts", []PairHealth{h, h, h}, Budget{}, time.Time{}, t0, WaveSoaking, t0},
		{"still soaking", []PairHealth{h, h, h}, Budget{}, t0, t0.Add(9 * time.Minute), WaveSoaking, t0},
		{"soaked", []PairHealth{h, h, h}, Budget{}, t0, t0.Add(soak), WaveComplete, t0},
		{"one unhealthy, none allowed: halted", []PairHealth{h, u, p}, Budget{}, time.Time{}, t0, WaveHalted, time.Time{}},
		{"one unhealthy, one allowed, the rest healthy: soaking", []PairHealth{h, u, h}, Budget{Count: 1}, time.Time{}, t0, WaveSoaking, t0},
		{"one unhealthy allowed, one pending: progressing", []PairHealth{h, u, p}, Budget{Count: 1}, time.Time{}, t0, WaveProgressing, time.Time{}},
		{"25% of 8 allowed: 2 unhealthy soak", []PairHealth{h, h, h, h, h, h, u, u}, Budget{Percent: 25}, time.Time{}, t0, WaveSoaking, t0},
		{"25% of 8 allowed: 3 unhealthy halt", []PairHealth{h, h, h, h, h, u, u, u}, Budget{Percent: 25}, time.Time{}, t0, WaveHalted, time.Time{}},
		{"25% of 3 rounds down to 0", []PairHealth{h, h, u}, Budget{Percent: 25}, time.Time{}, t0, WaveHalted, time.Time{}},
		{"a pair turns unhealthy while soaking: halted", []PairHealth{h, u, h}, Budget{}, t0, t0.Add(5 * time.Minute), WaveHalted, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.pairs, tc.budget, soak, tc.since, tc.now)
			if d.State != tc.want || !d.HealthySince.Equal(tc.wantSince) {
				t.Fatalf("got %s since %s, want %s since %s", d.State, d.HealthySince, tc.want, tc.wantSince)
			}
			if d.State == WaveSoaking && !d.SoakEnds.Equal(tc.wantSince.Add(soak)) {
				t.Fatalf("soak ends %s", d.SoakEnds)
			}
		})
	}
}

// Generation: a promoted wave gets the new generation; the others keep theirs, never move backwards and
// never jump ahead; a cluster that joins mid-rollout gets what its wave runs.
func TestGeneration(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		wave, promoted                int
		next, previous, last, carried int64
		want                          int64
	}{
		{"wave 1 promoted: the new generation", 0, 0, 3, 2, 2, 2, 3},
		{"a later wave keeps the last completed", 2, 0, 3, 2, 2, 2, 2},
		{"a superseded rollout's generation is kept, not rolled back", 1, 0, 4, 2, 2, 3, 3},
		{"a pair that completed a newer generation keeps it", 2, 0, 4, 2, 3, 3, 3},
		{"a cluster that joined mid-rollout gets what its wave runs", 2, 0, 3, 2, 0, 0, 2},
		{"the first generation goes everywhere", 2, 0, 1, 0, 0, 0, 1},
		{"nothing beyond the new generation", 2, 0, 3, 2, 5, 0, 3},
		{"all waves promoted", 3, 3, 3, 2, 2, 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Generation(tc.wave, tc.promoted, tc.next, tc.previous, tc.last, tc.carried); got != tc.want {
				t.Fatalf("generation %d, want %d", got, tc.want)
			}
		})
	}
}
