package fleet

import (
	"encoding/json"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// ClusterFromSecret is the registered cluster an owned Argo CD or Flux Secret stands for, read from the
// Secret's metadata alone (owned.Record): its labels and annotations, never its data. A Secret whose
// metadata lacks the server (or, on an Argo CD output, the Argo CD name) stands for no cluster until the
// registrar writes it back: an older registrar's Secret, or one someone edited. capi, when known,
// supplies the labels workloads select on (the CAPI Cluster's own, not only the propagated ones).
func ClusterFromSecret(s metav1.Object, capi *clusterv1.Cluster) (Cluster, bool) {
	rec, ok := owned.RecordOf(s.GetLabels(), s.GetAnnotations())
	if !ok {
		return Cluster{}, false
	}
	// A Secret written before the registrar published these facts lacks them until its next write:
	// the cluster is still registered, and an answer that would hold it is refused, never shrunk.
	incomplete := rec.Server == ""
	switch rec.Output {
	case owned.OutputArgoCD:
		incomplete = incomplete || rec.ArgoCDName == ""
	case owned.OutputFlux:
		rec.ArgoCDName = ""
	default:
		return Cluster{}, false
	}
	c := Cluster{
		Name: rec.Cluster.Name, Namespace: rec.Cluster.Namespace, Registration: rec.Registration,
		KubernetesVersion: rec.KubernetesVersion, Ready: rec.Reachable, Server: rec.Server, ArgoCDName: rec.ArgoCDName,
		Labels: map[string]string{}, Incomplete: incomplete, TokenExpiresAt: rec.TokenExpiresAt,
	}
	labels := s.GetLabels()
	if capi != nil {
		labels = capi.Labels
	}
	for k, v := range labels {
		c.Labels[k] = v
	}
	return c, true
}

// WorkloadFrom converts a Workload object; a selector or values that cannot be used are an error the
// Workload's status reports.
func WorkloadFrom(w *fleetv1.Workload) (Workload, error) {
	out := Workload{
		Name: w.Name, Namespace: w.Namespace, Labels: w.Labels, Registration: w.Spec.Registration,
		RepoURL: w.Spec.Source.RepoURL, Path: w.Spec.Source.Path, Chart: w.Spec.Source.Chart,
		TargetRevision: w.Spec.Source.TargetRevision, DestinationNamespace: w.Spec.Destination.Namespace,
	}
	if w.Spec.ClusterSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(w.Spec.ClusterSelector)
		if err != nil {
			return Workload{}, fmt.Errorf("spec.clusterSelector: %w", err)
		}
		out.ClusterSelector = sel
	}
	values, err := objectOf(w.Spec.Values, "spec.values")
	if err != nil {
		return Workload{}, err
	}
	out.Values = values
	for i, o := range w.Spec.Overrides {
		sel, err := metav1.LabelSelectorAsSelector(&o.ClusterSelector)
		if err != nil {
			return Workload{}, fmt.Errorf("spec.overrides[%d].clusterSelector: %w", i, err)
		}
		values, err := objectOf(o.Values, fmt.Sprintf("spec.overrides[%d].values", i))
		if err != nil {
			return Workload{}, err
		}
		out.Overrides = append(out.Overrides, Override{Selector: sel, Values: values})
	}
	out.frags = newWorkloadFragments(&out)
	return out, nil
}

func objectOf(raw *apiextensionsv1.JSON, field string) (map[string]any, error) {
	if raw == nil || len(raw.Raw) == 0 || string(raw.Raw) == "null" {
		return nil, nil
	}
	data := raw.Raw
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s must be a JSON object", field)
	}
	return out, nil
}
