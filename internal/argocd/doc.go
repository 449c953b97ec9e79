// Package argocd owns Argo CD's wire formats that fleetbridge writes: the cluster Secret and its
// `config` JSON. The types are fleetbridge's own, written from Argo CD's documented format (util/db in
// Argo CD); hack/conformance proves Argo CD's own parser accepts them.
package argocd
