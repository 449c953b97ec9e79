// Package workloadhttp owns the guards on every HTTP call fleetbridge makes to a workload API server, a
// possibly hostile network peer: a cap on the bytes of each response (LimitResponses), and a dialer
// that resolves hostnames itself and refuses denied addresses (DialContext), so DNS cannot point a
// check-passing name at the cloud's metadata endpoint.
package workloadhttp
