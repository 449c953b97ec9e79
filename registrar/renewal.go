package registrar

import (
	"context"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// Token renewals happen in windows: shared instants on the wall clock, one window period apart, at which
// every token due is written together. Argo CD requeues every ApplicationSet with a cluster generator on
// each write of a cluster Secret (argo-cd#25630), and its work queue merges the writes that arrive while
// a reconcile is queued or running, so a window costs each such ApplicationSet about two reconciles
// however many Secrets it rewrites, where renewals spread over the clock cost one each. The tokens of a
// window are minted a lead time before it, so the window itself only writes Secrets.

// maxWindowPeriod is the period of the renewal windows for long-lived tokens: one window an hour.
const maxWindowPeriod = time.Hour

// windowPeriod is the period of the renewal windows for tokens of one lifetime: an hour, or two thirds
// of the lifetime when that is shorter (40 minutes for a 1h token), in whole minutes. The window after a
// renewal then comes while a quarter of the token's lifetime is left for retries.
func windowPeriod(life time.Duration) time.Duration {
	p := min(maxWindowPeriod, life*2/3)
	if p >= time.Minute {
		p = p.Truncate(time.Minute)
	}
	return p
}

// premintLead is how long before its window a token is minted: an eighth of the window period, at most
// 5 minutes. The window's writes then wait for no workload API server.
func premintLead(life time.Duration) time.Duration {
	return min(windowPeriod(life)/8, 5*time.Minute)
}

// renewalWindow is when a token is renewed: one of the window boundaries (multiples of the window
// period) after a tenth of its lifetime (and after twice the lead, as a token minted ahead is issued a
// lead before the window that writes it) and at most 85% into it, chosen by a hash of seed
// (renewalSeed) and the issue time. The choice is stable across reconciles and restarts, and it spreads a fleet whose
// tokens were minted together (a cold start, a TTL change) over every window that fits: the 18 hourly
// windows of a 24h token. A token renewed at a window renews at a window again, so the fleet's writes
// stay in windows. The latest renewal leaves 15% of the lifetime for a failed renewal to be retried.
func renewalWindow(t tokenTimes, seed string) time.Time {
	life := t.ExpiresAt.Sub(t.IssuedAt)
	if life <= 0 {
		return t.IssuedAt
	}
	latest := t.IssuedAt.Add(life * 85 / 100)
	p := windowPeriod(life)
	if p <= 0 {
		return latest
	}
	// The first boundary after the earliest renewal. Up to latest is at least 0.85 - 1/6 of the
	// lifetime, more than one period, so a boundary is always there.
	earliest := t.IssuedAt.Add(max(life/10, 2*premintLead(life)))
	first := earliest.Truncate(p).Add(p)
	if first.After(latest) {
		return latest
	}
	n := uint64(latest.Sub(first)/p) + 1
	// The issue time joins the hash, so each renewal of a token picks its window afresh: a fixed pick
	// gives each Cluster a fixed cycle, and fixed cycles line up into a few crowded windows over days.
	h := fnv.New64a()
	_, _ = h.Write([]byte(seed))
	_, _ = h.Write([]byte(strconv.FormatInt(t.IssuedAt.Unix(), 10)))
	return first.Add(time.Duration(h.Sum64()%n) * p)
}

// renewalSeed is the seed of renewalWindow for one Cluster and Registration.
func renewalSeed(cluster types.UID, registration string) string {
	return string(cluster) + "/" + registration
}

// renewalScheduler owns when each Cluster is next reconciled for its tokens: to mint ahead of a window,
// and to write at it. It checks the controller's clock every second and enqueues, together, every
// Cluster that is due, so a window's Clusters start at once rather than each on its own requeue timer.
type renewalScheduler struct {
	now  func() time.Time
	tick time.Duration

	mu  sync.Mutex
	due map[types.NamespacedName]time.Time

	events chan event.GenericEvent
}

func newRenewalScheduler(now func() time.Time) *renewalScheduler {
	return &renewalScheduler{now: now, tick: time.Second, due: map[types.NamespacedName]time.Time{},
		events: make(chan event.GenericEvent, 1024)}
}

// schedule sets when a Cluster is next due; the zero time forgets it.
func (s *renewalScheduler) schedule(cluster types.NamespacedName, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at.IsZero() {
		delete(s.due, cluster)
		return
	}
	s.due[cluster] = at
}

// takeDue removes and returns the Clusters due at now.
func (s *renewalScheduler) takeDue(now time.Time) []types.NamespacedName {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []types.NamespacedName
	for key, at := range s.due {
		if !now.Before(at) {
			out = append(out, key)
			delete(s.due, key)
		}
	}
	return out
}

// Start runs the scheduler until ctx ends (a manager Runnable).
func (s *renewalScheduler) Start(ctx context.Context) error {
	t := time.NewTicker(s.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, key := range s.takeDue(s.now()) {
			c := &clusterv1.Cluster{}
			c.Namespace, c.Name = key.Namespace, key.Name
			select {
			case s.events <- event.GenericEvent{Object: c}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// NeedLeaderElection: only the leader writes.
func (s *renewalScheduler) NeedLeaderElection() bool { return true }
