package registrar

import (
	"k8s.io/apimachinery/pkg/api/meta"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// controlPlaneInitialized says whether the Cluster's API server serves requests. It accepts the
// v1beta2 field and conditions, and the v1beta1 conditions CAPI keeps under status.deprecated.
// status.phase is informational in CAPI and is not consulted.
func controlPlaneInitialized(c *clusterv1.Cluster) bool {
	if c.Status.Initialization.ControlPlaneInitialized != nil && *c.Status.Initialization.ControlPlaneInitialized {
		return true
	}
	for _, t := range []string{clusterv1.ClusterControlPlaneInitializedCondition, clusterv1.ClusterAvailableCondition} {
		if meta.IsStatusConditionTrue(c.Status.Conditions, t) {
			return true
		}
	}
	if c.Status.Deprecated != nil && c.Status.Deprecated.V1Beta1 != nil {
		for _, cond := range c.Status.Deprecated.V1Beta1.Conditions {
			if (cond.Type == "ControlPlaneInitialized" || cond.Type == "ControlPlaneReady" || cond.Type == "Ready") && cond.Status == "True" {
				return true
			}
		}
	}
	return false
}

// paused says whether Cluster API (and so fleetbridge) must leave the Cluster as it is.
func paused(c *clusterv1.Cluster) bool {
	if c.Spec.Paused != nil && *c.Spec.Paused {
		return true
	}
	_, ok := c.Annotations[clusterv1.PausedAnnotation]
	return ok
}
