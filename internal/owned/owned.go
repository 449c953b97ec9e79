// Package owned owns the fleetbridge.io/ labels and annotations that mark what fleetbridge wrote. An object
// without LabelRegistration is never modified or deleted by fleetbridge, with one exception: a Secret the
// running controller itself wrote (the same UID) whose labels someone stripped is written back.
package owned

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Labels that mark ownership and say what an object is for.
const (
	LabelRegistration     = "fleetbridge.io/registration"
	LabelClusterNamespace = "fleetbridge.io/cluster-namespace"
	LabelClusterName      = "fleetbridge.io/cluster-name"
	LabelOutput           = "fleetbridge.io/output"
)

// Fact labels: what fleetbridge learned about a cluster, for ApplicationSet selectors.
const (
	LabelKubernetesVersion  = "fleetbridge.io/kubernetes-version"
	LabelClusterClass       = "fleetbridge.io/cluster-class"
	LabelInfrastructureKind = "fleetbridge.io/infrastructure-kind"
)

// Annotations on written secrets. They hold the non-secret facts of a registered cluster, never
// credential material, so a reader of a Secret's metadata alone (the plugin) needs none of its data.
const (
	AnnotationTokenIssuedAt  = "fleetbridge.io/token-issued-at"
	AnnotationTokenExpiresAt = "fleetbridge.io/token-expires-at"
	// AnnotationReachable is "false" while the cluster's last probe failed (the Secret is kept, marked).
	AnnotationReachable = "fleetbridge.io/reachable"
	// AnnotationServer is the workload API server's URL (a URL is not a valid label value).
	AnnotationServer = "fleetbridge.io/server"
	// AnnotationArgoCDName is the cluster's name in Argo CD (the Secret's data.name), on Argo CD outputs.
	AnnotationArgoCDName = "fleetbridge.io/argocd-name"
)

// Outputs: what an owned object is.
const (
	OutputArgoCD = "argocd"
	OutputFlux   = "flux"
	// OutputWorkloadAccess marks the ServiceAccount and bindings fleetbridge creates on workload clusters.
	OutputWorkloadAccess = "workload-access"
)

// FieldManager is the server-side apply field manager of every fleetbridge write.
const FieldManager = "fleetbridge"

// Finalizer lets a Registration's deletion wait until its secrets and workload credentials are gone.
const Finalizer = "fleetbridge.io/cleanup"

// Labels are the ownership labels for an object written for one Registration and Cluster.
func Labels(registration string, cluster types.NamespacedName, output string) map[string]string {
	return map[string]string{
		LabelRegistration:     registration,
		LabelClusterNamespace: cluster.Namespace,
		LabelClusterName:      cluster.Name,
		LabelOutput:           output,
	}
}

// IsOwned says whether fleetbridge wrote the object with these labels.
func IsOwned(l map[string]string) bool { return l[LabelRegistration] != "" }

// ClusterOf is the CAPI Cluster an owned object was written for.
func ClusterOf(l map[string]string) (types.NamespacedName, bool) {
	key := types.NamespacedName{Namespace: l[LabelClusterNamespace], Name: l[LabelClusterName]}
	return key, key.Namespace != "" && key.Name != ""
}

// Selector selects every object fleetbridge owns.
func Selector() labels.Selector {
	s, _ := labels.Parse(LabelRegistration)
	return s
}

// ForCluster selects the owned objects written for one Cluster.
func ForCluster(cluster types.NamespacedName) labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelClusterNamespace: cluster.Namespace, LabelClusterName: cluster.Name})
}

// ForRegistration selects the owned objects written for one Registration.
func ForRegistration(registration string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelRegistration: registration})
}

// ShortHash is a stable 8-hex-digit digest of parts, used to keep generated names unique.
func ShortHash(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:4])
}
