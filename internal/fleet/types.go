package fleet

import (
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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
	// TokenExpiresAt is when the credential its outputs carry expires (zero when unknown or not a
	// minted token); the fleet page shows it, answers do not carry it.
	TokenExpiresAt time.Time `json:"-"`
	// Incomplete is set while its Secret lacks the server or Argo CD name annotations (written by an
	// older registrar): an answer holding it is refused with ErrIncomplete.
	Incomplete bool `json:"-"`

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

// Filter narrows the pairs a request gets. Zero values filter nothing. The plugin builds it from a
// request within its token's scope, so every field is already an intersection with that scope.
type Filter struct {
	// Workloads, when not empty, are the only Workloads paired. A key with an empty namespace matches
	// nothing: it stands for a name that resolved to no Workload.
	Workloads []types.NamespacedName
	// WorkloadNamespaces, when not nil, are the only namespaces whose Workloads are paired.
	WorkloadNamespaces []string
	WorkloadSelector   labels.Selector
	// Registrations, when not nil, are the only Registrations whose clusters are paired.
	Registrations []string
	// ClusterSelectors must all match a cluster's labels.
	ClusterSelectors []labels.Selector
	// ReadyOnly leaves out clusters whose last probe failed. By default they stay (ready: false): an
	// outage must not shrink an answer, because a smaller answer makes Argo CD delete Applications.
	ReadyOnly bool
}

// AllowsCluster says whether the filter keeps a cluster.
func (f Filter) AllowsCluster(c *Cluster) bool {
	if (f.ReadyOnly && !c.Ready) || (f.Registrations != nil && !slices.Contains(f.Registrations, c.Registration)) {
		return false
	}
	for _, sel := range f.ClusterSelectors {
		if sel != nil && !sel.Matches(labels.Set(c.Labels)) {
			return false
		}
	}
	return true
}

// AllowsWorkload says whether the filter keeps a Workload.
func (f Filter) AllowsWorkload(w *Workload) bool {
	if len(f.Workloads) > 0 && !slices.Contains(f.Workloads, types.NamespacedName{Namespace: w.Namespace, Name: w.Name}) {
		return false
	}
	if f.WorkloadNamespaces != nil && !slices.Contains(f.WorkloadNamespaces, w.Namespace) {
		return false
	}
	return f.WorkloadSelector == nil || f.WorkloadSelector.Matches(labels.Set(w.Labels))
}
