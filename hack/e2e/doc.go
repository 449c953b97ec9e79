// Package e2e runs fleetbridge's real binary with Argo CD's real ApplicationSet controller against a real
// management API server and workload API servers, to prove users' ApplicationSets work end to end.
package e2e
