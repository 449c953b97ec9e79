// Package config holds fleetbridge's install manifests: the generated CRDs and RBAC, the Helm chart
// (helm/fleetbridge) and the kustomize base (default). It has no code; its tests render the chart with
// Helm's SDK and the base with kustomize's, apply what they produce to a real API server, and run the
// binary with the chart's own RBAC to prove it is enough.
package config
