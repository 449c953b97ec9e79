// Package plugin will own the HTTP server that answers Argo CD's ApplicationSet plugin generator and Flux
// Operator's ExternalService input protocol with cluster x workload pairs (issue 5). It is empty until then.
package plugin
