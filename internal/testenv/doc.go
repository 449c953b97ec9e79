// Package testenv owns fleetbridge's real Kubernetes test bed: a management kube-apiserver (with the
// Cluster API and fleetbridge CRDs) and any number of workload kube-apiservers, each published in the
// management server as a CAPI Cluster plus its <name>-kubeconfig Secret, as Cluster API itself would.
//
// The binaries come from `make envtest-assets` (bin/k8s, or $KUBEBUILDER_ASSETS); a missing binary is
// a test failure with a hint, never a skip. Each API server costs 3 to 4.5 s to start and about 1.2 s to
// stop, so start the management server once per package in TestMain and share workload servers where
// the tests allow.
package testenv
