package registrar

import (
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// clusterResult is the outcome of the last reconcile of one Cluster for one Registration.
type clusterResult struct {
	Reason  string
	Message string
	// Registered: every output is written and current.
	Registered bool
	// Failing: something the operator must look at (waiting for a control plane is not failing).
	Failing bool
	// Insecure: registered without TLS verification; Unverified: with an exec credential the controller
	// could not check.
	Insecure, Unverified bool
	TokenExpiresAt       time.Time
	renewAt              time.Time
	// ConflictWith is the Registration that won this Cluster from this one (Reason Conflict).
	ConflictWith string
	// attempts counts consecutive failures, for backoff.
	attempts int
	// seen is what the reconcile learnt of the workload cluster, for its ClusterProfile.
	seen *clusterSeen
}

func (r clusterResult) sameReport(o clusterResult) bool {
	return r.Reason == o.Reason && r.Message == o.Message && r.Registered == o.Registered && r.Failing == o.Failing
}

// results holds the latest clusterResult per Registration and Cluster. The Cluster controller writes it;
// the Registration controller summarises it into status. It is memory only: after a restart the Cluster
// controller refills it before the Registration controller writes counts again.
type results struct {
	mu    sync.Mutex
	byReg map[string]map[types.NamespacedName]clusterResult
}

func newResults() *results {
	return &results{byReg: map[string]map[types.NamespacedName]clusterResult{}}
}

// set records a result and says whether anything a status or Event shows changed.
func (r *results) set(reg string, cluster types.NamespacedName, res clusterResult) (previous clusterResult, changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.byReg[reg]
	if m == nil {
		m = map[types.NamespacedName]clusterResult{}
		r.byReg[reg] = m
	}
	prev, had := m[cluster]
	if res.Failing && had && prev.Failing {
		res.attempts = prev.attempts + 1
	} else if res.Failing {
		res.attempts = 1
	}
	m[cluster] = res
	return prev, !had || !prev.sameReport(res) || !prev.TokenExpiresAt.Equal(res.TokenExpiresAt)
}

func (r *results) get(reg string, cluster types.NamespacedName) (clusterResult, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.byReg[reg][cluster]
	return res, ok
}

// remove forgets a Cluster for a Registration and says whether it was known.
func (r *results) remove(reg string, cluster types.NamespacedName) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, had := r.byReg[reg][cluster]
	delete(r.byReg[reg], cluster)
	return had
}

// registrationsOf lists the Registrations holding a result for a Cluster.
func (r *results) registrationsOf(cluster types.NamespacedName) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for reg, m := range r.byReg {
		if _, ok := m[cluster]; ok {
			out = append(out, reg)
		}
	}
	return out
}

// outrankedBy lists, sorted, the Registrations holding a result that lost a Cluster to winner.
func (r *results) outrankedBy(winner string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for reg, m := range r.byReg {
		for _, res := range m {
			if res.ConflictWith == winner {
				out = append(out, reg)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

func (r *results) forgetRegistration(reg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byReg, reg)
}

func (r *results) snapshot(reg string) map[types.NamespacedName]clusterResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[types.NamespacedName]clusterResult, len(r.byReg[reg]))
	for k, v := range r.byReg[reg] {
		out[k] = v
	}
	return out
}

// backoff is how long to wait before retrying a failing Cluster: 5s doubling to 5 minutes.
func backoff(attempts int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < attempts && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}
