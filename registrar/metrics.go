package registrar

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	registeredClusters = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleetbridge_registered_clusters",
		Help: "Clusters whose secrets are written and current, per Registration.",
	}, []string{"registration"})
	failingClusters = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleetbridge_failing_clusters",
		Help: "Selected clusters that could not be registered, per Registration and reason.",
	}, []string{"registration", "reason"})
	tokenExpirySeconds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleetbridge_token_expiry_seconds",
		Help: "Seconds until the current ServiceAccount token of a registered cluster expires, when last written.",
	}, []string{"registration", "cluster_namespace", "cluster"})
	tokensMinted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetbridge_tokens_minted_total",
		Help: "ServiceAccount tokens minted on workload clusters.",
	}, []string{"registration"})
	secretWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetbridge_secret_writes_total",
		Help: "Writes of owned Secrets on the management cluster, by output, operation (create, update, patch, delete) and cause (create: a new registration; rotation: a renewed token; change: labels or other content; repair: someone else changed or deleted it; unreachable: the cluster stopped answering; remove: deregistered or no longer wanted). Flat when nothing changes.",
	}, []string{"output", "operation", "cause"})
	reconcileDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleetbridge_reconcile_duration_seconds",
		Help:    "Duration of fleetbridge reconciles, per controller.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	}, []string{"controller"})
)

func init() {
	metrics.Registry.MustRegister(registeredClusters, failingClusters, tokenExpirySeconds, tokensMinted, secretWrites, reconcileDuration)
}

// Causes of Secret writes (fleetbridge_secret_writes_total).
const (
	causeCreate      = "create"
	causeRotation    = "rotation"
	causeChange      = "change"
	causeRepair      = "repair"
	causeUnreachable = "unreachable"
	causeRemove      = "remove"
)

// countWrite counts one write of an owned Secret.
func countWrite(output, operation, cause string) {
	secretWrites.WithLabelValues(output, operation, cause).Inc()
}
