// Package plugin owns the HTTP server that answers Argo CD's ApplicationSet plugin generator
// (POST /api/v1/getparams.execute) and Flux Operator's ExternalService input provider
// (GET /api/v1/flux/inputs) with cluster x workload pairs from the in-memory fleet. It never answers 200
// unless it knows the answer: an empty 200 makes Argo CD delete Applications.
package plugin
