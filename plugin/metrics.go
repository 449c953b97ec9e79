package plugin

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetbridge_plugin_requests_total",
		Help: "Plugin requests by route and HTTP status.",
	}, []string{"route", "code"})
	latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleetbridge_plugin_request_duration_seconds",
		Help:    "Plugin request latency by route.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route"})
	pairsServed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetbridge_plugin_pairs_served_total",
		Help: "Cluster x workload pairs served, by protocol.",
	}, []string{"protocol"})
	answersRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetbridge_plugin_answers_refused_total",
		Help: "Answers refused before they were built because they were over --max-answer-bytes, by protocol.",
	}, []string{"protocol"})
	tokenReloadFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fleetbridge_plugin_token_reload_failures_total",
		Help: "Reloads of the plugin tokens directory or tenants file that failed (the last good tokens stay valid).",
	})
	refreshes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fleetbridge_plugin_applicationset_refreshes_total",
		Help: "ApplicationSets nudged with the refresh annotation because their answer changed.",
	})
	providerRefreshes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fleetbridge_plugin_inputprovider_refreshes_total",
		Help: "Flux ResourceSetInputProviders nudged with a reconcile request because their answer changed.",
	})
	providersOverLimit = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fleetbridge_plugin_inputproviders_over_limit",
		Help: "Flux ResourceSetInputProviders whose answer has more inputs than their spec.filter.limit keeps.",
	})
	inputsDropped = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fleetbridge_plugin_inputprovider_inputs_dropped",
		Help: "Inputs Flux Operator drops at spec.filter.limit, summed over the providers that poll this server.",
	})
)

func init() {
	metrics.Registry.MustRegister(requests, latency, pairsServed, answersRefused, tokenReloadFailures, refreshes, providerRefreshes, providersOverLimit, inputsDropped)
}
