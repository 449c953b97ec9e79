// Package v1alpha1 holds fleetbridge's API types (group fleetbridge.io): Registration says which
// Cluster API clusters become Argo CD and Flux destinations and with which credentials; Workload says
// what the plugin server fans out across them.
//
// +kubebuilder:object:generate=true
// +groupName=fleetbridge.io
package v1alpha1
