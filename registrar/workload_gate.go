package registrar

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

// workloadGate orders the Cluster controller's work for a Registration against that Registration's
// deletion, and remembers, per Registration and Cluster, which access the workload cluster was last
// checked to hold nothing beyond. Both controllers share one.
//
// A Cluster reconcile reads the Registrations from the cache, then may spend seconds on a workload
// cluster. One that read a Registration just before its deletion began could otherwise create the
// ServiceAccount after the deletion's cleanup removed it, and nothing would remove it again. So the
// register path holds a read lock of its Registration while it works (run), and the deletion takes the
// write lock, which waits for every register in flight, and marks the Registration closed (close)
// before it removes access. A register that enters later sees the mark and does nothing. The manager
// runs one leader, so memory is enough.
type workloadGate struct {
	// beforeEnter is Options.beforeRegister, a test seam: it runs before enter takes the lock.
	beforeEnter func(ctx context.Context, registration string, cluster types.NamespacedName)

	mu      sync.Mutex
	entries map[types.UID]*sync.RWMutex
	// closed holds the Registrations whose deletion began. The marks stay for the process's lifetime
	// (a UID each): a reconcile may carry a copy of a Registration read long before it was deleted.
	closed map[types.UID]bool
	// verified is, per Registration name and Cluster, the access (accessSignature, or noAccess) the
	// workload cluster was last checked to hold nothing beyond, so a steady fleet lists nothing there
	// (or noAccessDeferred: to be checked at the next reconcile).
	verified map[string]map[types.NamespacedName]string
}

func newWorkloadGate(beforeEnter func(ctx context.Context, registration string, cluster types.NamespacedName)) *workloadGate {
	return &workloadGate{beforeEnter: beforeEnter, entries: map[types.UID]*sync.RWMutex{}, closed: map[types.UID]bool{},
		verified: map[string]map[types.NamespacedName]string{}}
}

// run runs register, the work of a Registration for a Cluster, unless the Registration's deletion
// began, and says whether it ran. A deletion that begins meanwhile waits until it returns.
func (g *workloadGate) run(ctx context.Context, reg *fleetv1.Registration, cluster types.NamespacedName, register func()) bool {
	leave, open := g.enter(ctx, reg, cluster)
	if !open {
		return false
	}
	defer leave() // also when register panics (controller-runtime recovers), or close would wait forever
	register()
	return true
}

// enter lets a register of a Registration for a Cluster touch the workload cluster until leave is
// called; open is false (and leave a no-op) when the Registration's deletion began.
func (g *workloadGate) enter(ctx context.Context, reg *fleetv1.Registration, cluster types.NamespacedName) (leave func(), open bool) {
	if g == nil {
		return func() {}, true
	}
	if g.beforeEnter != nil {
		g.beforeEnter(ctx, reg.Name, cluster)
	}
	g.mu.Lock()
	if g.closed[reg.UID] {
		g.mu.Unlock()
		return func() {}, false
	}
	lock := g.entries[reg.UID]
	if lock == nil {
		lock = &sync.RWMutex{}
		g.entries[reg.UID] = lock
	}
	g.mu.Unlock()
	lock.RLock()
	// close may have run between the check above and the lock.
	g.mu.Lock()
	closed := g.closed[reg.UID]
	g.mu.Unlock()
	if closed {
		lock.RUnlock()
		return func() {}, false
	}
	return lock.RUnlock, true
}

// close waits until no register of the Registration is in flight, and keeps any from starting again.
func (g *workloadGate) close(reg *fleetv1.Registration) {
	if g == nil {
		return
	}
	g.mu.Lock()
	lock := g.entries[reg.UID]
	if lock == nil {
		lock = &sync.RWMutex{}
		g.entries[reg.UID] = lock
	}
	g.mu.Unlock()
	lock.Lock()
	g.mu.Lock()
	g.closed[reg.UID] = true
	delete(g.entries, reg.UID)
	delete(g.verified, reg.Name)
	g.mu.Unlock()
	lock.Unlock()
}

// isVerified says whether the workload cluster of a Cluster was checked to hold nothing of the
// Registration beyond access (in this process, since the Registration last asked for other access).
func (g *workloadGate) isVerified(registration string, cluster types.NamespacedName, access string) bool {
	return g.verifiedAs(registration, cluster) == access
}

// verifiedAs is what was last remembered for a Registration and Cluster; "" when nothing is.
func (g *workloadGate) verifiedAs(registration string, cluster types.NamespacedName) string {
	if g == nil {
		return ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.verified[registration][cluster]
}

func (g *workloadGate) setVerified(registration string, cluster types.NamespacedName, access string) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.verified[registration]
	if m == nil {
		m = map[types.NamespacedName]string{}
		g.verified[registration] = m
	}
	m[cluster] = access
}

// forget drops what is remembered of a Registration on a Cluster it no longer registers.
func (g *workloadGate) forget(registration string, cluster types.NamespacedName) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.verified[registration], cluster)
	if len(g.verified[registration]) == 0 {
		delete(g.verified, registration)
	}
}
