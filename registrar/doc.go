// Package registrar owns the controllers that turn Cluster API Clusters into Argo CD cluster Secrets and
// Flux kubeconfig Secrets, as Registrations ask. The Cluster controller does the per-cluster work
// (selection, probe, workload-side ServiceAccount and token, secrets); the Registration controller owns
// the finalizer, cleanup and the aggregated status. Decisions are pure functions with table tests;
// controllers only read, call them, and write what differs.
package registrar
