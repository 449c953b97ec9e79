package registrar

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// renewalTimeline simulates the renewals the registrar schedules for a fleet of n Clusters whose tokens
// were minted within the first 30 s of a cold start, over span: each renewal writes, at its window, a
// token minted a lead before it (as tokenSource does). It returns the write times, and fails the test
// if a token would be written after it expired or with less than 15% of its lifetime left.
func renewalTimeline(t testing.TB, rng *rand.Rand, n int, ttl, span time.Duration, start time.Time) []time.Time {
	t.Helper()
	var writes []time.Time
	lead := premintLead(ttl)
	for i := 0; i < n; i++ {
		seed := renewalSeed(randomUID(rng), "fleet")
		issued := start.Add(time.Duration(rng.Int64N(int64(30 * time.Second))))
		times := tokenTimes{IssuedAt: issued, ExpiresAt: issued.Add(ttl)}
		for {
			at := renewalWindow(times, seed)
			if at.Sub(start) > span {
				break
			}
			if left := times.ExpiresAt.Sub(at); left < ttl*15/100 {
				t.Fatalf("a token is renewed with %s of its %s left", left, ttl)
			}
			writes = append(writes, at)
			times = tokenTimes{IssuedAt: at.Add(-lead), ExpiresAt: at.Add(-lead).Add(ttl)}
		}
	}
	return writes
}

// Renewals come in windows: once a fleet's tokens have been renewed once, every clock hour holds at most
// one window with the default 24h TTL, and at most two with a 1h TTL (40-minute windows). With 24h,
// a fleet minted together is spread over the hourly windows, so no window holds more than 15% of it (about 85 on average)
// (the API load of a window stays bounded); with 1h every token is renewed in every window.
func TestRenewalWindowsPerHour(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ttl            time.Duration
		windowsPerHour int
		maxShare       float64
	}{
		{24 * time.Hour, 1, 0.15},
		{time.Hour, 2, 1},
	} {
		t.Run(tc.ttl.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(2026, 12)) // fixed: the test is deterministic
			const fleet = 1000
			writes := renewalTimeline(t, rng, fleet, tc.ttl, 7*24*time.Hour, start)
			perWindow := map[time.Time]int{}
			perHour := map[time.Time]map[time.Time]bool{}
			for _, w := range writes {
				perWindow[w]++
				if w.Sub(start) < tc.ttl {
					continue // the first renewals after a cold start
				}
				h := w.Truncate(time.Hour)
				if perHour[h] == nil {
					perHour[h] = map[time.Time]bool{}
				}
				perHour[h][w] = true
			}
			busiest := 0
			for _, n := range perWindow {
				busiest = max(busiest, n)
			}
			worst := 0
			for _, windows := range perHour {
				worst = max(worst, len(windows))
			}
			if worst > tc.windowsPerHour {
				t.Errorf("a clock hour holds %d renewal windows, want at most %d", worst, tc.windowsPerHour)
			}
			if limit := int(tc.maxShare * fleet); busiest > limit {
				t.Errorf("the busiest window renews %d of %d tokens, want at most %d", busiest, fleet, limit)
			}
			t.Logf("ttl %s: %d renewals over 7 days in %d windows (%.2f per hour), at most %d a window and %d windows a clock hour",
				tc.ttl, len(writes), len(perWindow), float64(len(perWindow))/(7*24), busiest, worst)
		})
	}
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
