package fleet

import (
	"k8s.io/apimachinery/pkg/labels"
)

// Cluster is one registered cluster as ApplicationSets see it.
type Cluster struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// ArgoCDName is the `name` in its Argo CD cluster Secret, for destination.name.
	ArgoCDName        string            `json:"argocdName"`
	Server            string            `json:"server"`
	Labels            map[string]string `json:"labels"`
	KubernetesVersion string            `json:"kubernetesVersion"`
	Ready             bool              `json:"ready"`
	// Registration that registered it (not serialised: callers filter on it).
	Registration string `json:"-"`

	json []byte // the encoded object, filled once (see fragment)
}

// Workload is one Workload's fan-out parameters, before per-cluster overrides.
type Workload struct {
	Name                 string
	Namespace            string
	Labels               map[string]string
	Registration         string
	ClusterSelector      labels.Selector // nil selects no cluster
	RepoURL              string
	Path                 string
	Chart                string
	TargetRevision       string
	DestinationNamespace string
	Values               map[string]any
	Overrides            []Override

	// frags are the encoded fragments, shared by every snapshot holding this conversion.
	frags *workloadFragments
}

// Override is one ordered entry of Workload.spec.overrides.
type Override struct {
	Selector labels.Selector
	Values   map[string]any
}

// Pair is one cluster x workload parameter set.
type Pair struct {
	Name     string         `json:"name"`
	Cluster  Cluster        `json:"cluster"`
	Workload WorkloadParams `json:"workload"`
}

// WorkloadParams is the workload part of a Pair, values already merged for the cluster.
type WorkloadParams struct {
	Name                 string         `json:"name"`
	Namespace            string         `json:"namespace"`
	RepoURL              string         `json:"repoURL"`
	Path                 string         `json:"path"`
	Chart                string         `json:"chart"`
	TargetRevision       string         `json:"targetRevision"`
	DestinationNamespace string         `json:"destinationNamespace"`
	Values               map[string]any `json:"values"`
	ValuesYAML           string         `json:"valuesYAML"`
}

// Filter narrows the pairs a request gets. Zero values filter nothing.
type Filter struct {
	Workloads         []string
	WorkloadSelector  labels.Selector
	WorkloadNamespace string
	ClusterSelector   labels.Selector
	Registration      string
	IncludeUnready    bool
}
