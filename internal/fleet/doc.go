// Package fleet owns fleetbridge's view of the fleet as the plugin serves it: registered clusters (from
// the Secrets the registrar wrote and their CAPI Clusters), Workloads, and the cluster x workload pairs
// computed from them, including the deep merge of per-cluster value overrides.
package fleet
