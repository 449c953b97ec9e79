// Package fleet owns fleetbridge's view of the fleet as the plugin serves it: registered clusters (from
// the metadata of the Secrets the registrar wrote, never their data, and their CAPI Clusters), Workloads,
// and the cluster x workload pairs computed from them, including the deep merge of per-cluster value
// overrides.
package fleet
