// Package e2e runs fleetbridge's real binary with Argo CD's real ApplicationSet controller and Flux
// Operator's real controllers against a real management API server and workload API servers, to prove
// users' ApplicationSets and ResourceSets work end to end.
package e2e
