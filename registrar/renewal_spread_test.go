package registrar

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// A fleet whose tokens were all minted at the same instant (a cold start, or a TTL change applied to
// every cluster) must not renew them in a burst: with a 1h TTL, no one-minute window may hold more than
// 5% of the fleet's renewals. The renewal times are the ones the registrar schedules (renewAt with the
// seed register uses), for fleets of 1,000 Clusters with random UIDs like the API server's.
func TestRenewalSpread(t *testing.T) {
	const (
		fleetSize = 1000
		ttl       = time.Hour
		limit     = fleetSize * 5 / 100
	)
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	times := tokenTimes{IssuedAt: issued, ExpiresAt: issued.Add(ttl)}
	rng := rand.New(rand.NewPCG(2026, 1)) // fixed: the test is deterministic
	worst := 0
	for fleet := 0; fleet < 20; fleet++ {
		renewals := make([]time.Time, fleetSize)
		for i := range renewals {
			renewals[i] = renewAt(times, renewalSeed(randomUID(rng), "fleet"))
		}
		busiest, at := busiestWindow(renewals, time.Minute)
		if busiest > limit {
			t.Errorf("fleet %d: %d of %d clusters renew within the minute from %s after minting, want at most %d (5%%)",
				fleet, busiest, fleetSize, at.Sub(issued).Round(time.Second), limit)
		}
		worst = max(worst, busiest)
	}
	t.Logf("busiest one-minute window over 20 fleets: %d of %d renewals (limit %d)", worst, fleetSize, limit)
}

// busiestWindow is the largest number of times within any window of length w (sliding, not aligned to
// minutes), and where that window starts.
func busiestWindow(times []time.Time, w time.Duration) (int, time.Time) {
	sorted := append([]time.Time(nil), times...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Before(sorted[j]) })
	best, start := 0, time.Time{}
	j := 0
	for i := range sorted {
		for sorted[i].Sub(sorted[j]) >= w {
			j++
		}
		if n := i - j + 1; n > best {
			best, start = n, sorted[j]
		}
	}
	return best, start
}

// randomUID is a version 4 UUID, as the API server gives objects.
func randomUID(rng *rand.Rand) types.UID {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return types.UID(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

func TestBusiestWindow(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s ...int) []time.Time {
		var out []time.Time
		for _, v := range s {
			out = append(out, base.Add(time.Duration(v)*time.Second))
		}
		return out
	}
	// 30s to 89s is one sliding minute holding four times, across two aligned minutes; 0s and 60s are a minute apart.
	if n, start := busiestWindow(at(89, 0, 30, 60, 70), time.Minute); n != 4 || !start.Equal(base.Add(30*time.Second)) {
		t.Fatalf("busiestWindow = %d from %s, want 4 from 30s", n, start.Sub(base))
	}
}
