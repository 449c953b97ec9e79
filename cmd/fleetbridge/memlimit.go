package main

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/fleetbridge/fleetbridge/plugin"
)

// memoryLimitShare is the share of the container's memory limit the Go runtime keeps the heap under: the
// rest is for memory the runtime does not count (stacks, the binary) and a margin before the OOM kill.
const memoryLimitShare = 0.9

// goMemoryLimit is the Go runtime's soft memory limit for a container limit given as a quantity ("512Mi",
// or bytes as the downward API gives them), or 0 when none is given. Without it a cold start's garbage
// (TLS handshakes, decoded objects) can grow the heap to twice what is live before a collection runs, and
// a large fleet then meets the container's limit.
func goMemoryLimit(limit string, goMemLimitSet bool) (int64, error) {
	if limit == "" || goMemLimitSet {
		return 0, nil
	}
	q, err := resource.ParseQuantity(limit)
	if err != nil {
		return 0, fmt.Errorf("--memory-limit %q: %w", limit, err)
	}
	if q.Sign() <= 0 {
		return 0, fmt.Errorf("--memory-limit %q: must be positive", limit)
	}
	return int64(float64(q.Value()) * memoryLimitShare), nil
}

// maxAnswerBytes is the default bound of a plugin answer for a Go memory limit (0: none). The server
// streams answers, but Argo CD's ApplicationSet controller buffers each whole, and a pod sized for a
// fleet is sized for its answers: a quarter of the limit leaves room for the fleet itself and a few
// answers in flight.
func maxAnswerBytes(goMemLimit int64) int64 {
	if goMemLimit <= 0 {
		return plugin.DefaultMaxAnswerBytes
	}
	return max(goMemLimit/4, 1<<20)
}
