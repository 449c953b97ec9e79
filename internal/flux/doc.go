// Package flux owns the Flux wire formats fleetbridge writes: self-contained kubeconfig Secrets that
// Kustomizations and HelmReleases reference with spec.kubeConfig (meta.KubeConfigReference).
package flux
