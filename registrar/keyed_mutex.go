package registrar

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// keyedMutex is a mutex per key; entries are dropped when nobody holds or waits for them.
type keyedMutex struct {
	mu sync.Mutex
	m  map[types.NamespacedName]*keyedEntry
}

type keyedEntry struct {
	mu      sync.Mutex
	waiters int
}

func (k *keyedMutex) lock(key types.NamespacedName) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[types.NamespacedName]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.waiters++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.waiters--
		if e.waiters == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
