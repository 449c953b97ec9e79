package owned

import (
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Record is what a Secret fleetbridge writes says about the registered cluster in its metadata: whose
// Secret it is, which output, where the cluster is, what the last probe learned, and the timing of the
// token it carries. The registrar encodes it onto every Secret it writes, and internal/fleet decodes it;
// it lives only in labels and annotations, so the plugin reads a registered cluster without its
// credentials.
type Record struct {
	Registration string
	Cluster      types.NamespacedName
	Output       string
	// Server is the workload API server's URL; ArgoCDName the cluster's name in Argo CD (Argo CD output).
	Server, ArgoCDName string
	// KubernetesVersion is what the last successful probe reported ("" when unknown).
	KubernetesVersion string
	// Reachable is false while the cluster's last probe failed.
	Reachable bool
	// TokenIssuedAt and TokenExpiresAt time the ServiceAccount token the Secret carries (zero without one).
	TokenIssuedAt, TokenExpiresAt time.Time
}

// Labels are the Record's labels: ownership, and the Kubernetes version when it is a valid label value.
func (r Record) Labels() map[string]string {
	out := Labels(r.Registration, r.Cluster, r.Output)
	if v := versionLabelValue(r.KubernetesVersion); v != "" {
		out[LabelKubernetesVersion] = v
	}
	return out
}

// Annotations are the Record's annotations.
func (r Record) Annotations() map[string]string {
	out := map[string]string{AnnotationReachable: "false"}
	if r.Reachable {
		out[AnnotationReachable] = "true"
	}
	if r.Server != "" {
		out[AnnotationServer] = r.Server
	}
	if r.ArgoCDName != "" {
		out[AnnotationArgoCDName] = r.ArgoCDName
	}
	if !r.TokenIssuedAt.IsZero() && !r.TokenExpiresAt.IsZero() {
		out[AnnotationTokenIssuedAt] = r.TokenIssuedAt.UTC().Format(time.RFC3339)
		out[AnnotationTokenExpiresAt] = r.TokenExpiresAt.UTC().Format(time.RFC3339)
	}
	return out
}

// RecordOf decodes a Record from a Secret's labels and annotations; ok is false when they are not
// fleetbridge's. Timing that does not parse reads as no token. Anyone who can edit the Secret can edit
// what it says: readers use it for display and selection, never as a credential record.
func RecordOf(labels, annotations map[string]string) (Record, bool) {
	cluster, ok := ClusterOf(labels)
	if !ok || !IsOwned(labels) {
		return Record{}, false
	}
	r := Record{
		Registration: labels[LabelRegistration], Cluster: cluster, Output: labels[LabelOutput],
		Server: annotations[AnnotationServer], ArgoCDName: annotations[AnnotationArgoCDName],
		KubernetesVersion: strings.ReplaceAll(labels[LabelKubernetesVersion], "_", "+"),
		Reachable:         annotations[AnnotationReachable] != "false",
	}
	issued, err1 := time.Parse(time.RFC3339, annotations[AnnotationTokenIssuedAt])
	expires, err2 := time.Parse(time.RFC3339, annotations[AnnotationTokenExpiresAt])
	if err1 == nil && err2 == nil {
		r.TokenIssuedAt, r.TokenExpiresAt = issued, expires
	}
	return r, true
}

// versionLabelValue is a Kubernetes version as a label value ("v1.36.3+k3s1" -> "v1.36.3_k3s1"), or ""
// when it cannot be one.
func versionLabelValue(v string) string {
	v = strings.ReplaceAll(v, "+", "_")
	if v == "" || len(validation.IsValidLabelValue(v)) > 0 {
		return ""
	}
	return v
}
