package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WorkloadSpec is a deployable unit that the plugin server pairs with every matching registered cluster.
type WorkloadSpec struct {
	// ClusterSelector selects registered clusters by their CAPI Cluster labels. Absent selects none;
	// an empty selector ({}) selects every registered cluster.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`

	// Registration restricts the workload to clusters registered by this Registration.
	// +optional
	Registration string `json:"registration,omitempty"`

	// Source is where the workload's manifests come from.
	Source WorkloadSource `json:"source"`

	// Destination is where the workload goes on each cluster.
	Destination WorkloadDestination `json:"destination"`

	// Values are free-form parameters handed to templates (for example Helm values).
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Values *apiextensionsv1.JSON `json:"values,omitempty"`

	// Overrides are deep-merged over Values, in order, for clusters their selector matches.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Overrides []WorkloadOverride `json:"overrides,omitempty"`
}

// WorkloadSource is a Git path or a Helm chart.
// +kubebuilder:validation:XValidation:rule="has(self.path) != has(self.chart)",message="exactly one of path or chart must be set"
type WorkloadSource struct {
	// RepoURL is the Git or Helm repository URL.
	// +kubebuilder:validation:MinLength=1
	RepoURL string `json:"repoURL"`
	// Path within a Git repository.
	// +optional
	Path string `json:"path,omitempty"`
	// Chart name within a Helm repository.
	// +optional
	Chart string `json:"chart,omitempty"`
	// TargetRevision is a Git revision or chart version.
	// +optional
	// +kubebuilder:default=HEAD
	TargetRevision string `json:"targetRevision,omitempty"`
}

// WorkloadDestination says where a workload lands on each cluster.
type WorkloadDestination struct {
	// Namespace on the workload cluster.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
}

// WorkloadOverride changes values for the clusters its selector matches.
type WorkloadOverride struct {
	// ClusterSelector selects the clusters this override applies to.
	ClusterSelector metav1.LabelSelector `json:"clusterSelector"`
	// Values are deep-merged over the workload's values (objects merge key by key; anything else replaces).
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Values *apiextensionsv1.JSON `json:"values"`
}

// WorkloadStatus is the observed state of a Workload.
type WorkloadStatus struct {
	// ObservedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready says whether the Workload is paired with registered clusters (Matched,
	// NoClustersSelected) or cannot be used (InvalidSpec); InputsTrimmed (reason InputLimitExceeded) is
	// True while a Flux ResourceSetInputProvider drops some of its pairs at its spec.filter.limit.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// MatchedClusters counts the registered clusters this workload is paired with now.
	// +optional
	MatchedClusters int32 `json:"matchedClusters"`
	// Fleet is what the pairs became: the state of the Argo CD Applications or Flux Kustomizations and
	// HelmReleases generated for them (found by their fleetbridge.io/pair label, else by the pair's name).
	// It is absent until a generated object has been seen.
	// +optional
	Fleet *WorkloadFleet `json:"fleet,omitempty"`
	// Summary says "all N clusters healthy at X", or names the first problem (the Ready column).
	// +optional
	Summary string `json:"summary,omitempty"`
}

// WorkloadFleet counts the Workload's pairs by the state of what they became, and names a bounded number
// of the clusters that are not healthy. Its size does not grow with the fleet.
type WorkloadFleet struct {
	// Healthy: synced at the desired revision and healthy (Argo CD), or applied at the revision last
	// attempted and Ready (Flux).
	Healthy int32 `json:"healthy"`
	// Progressing: Argo CD health Progressing or Suspended, Flux reconciling.
	Progressing int32 `json:"progressing"`
	// OutOfSync: not at the desired revision yet, or never applied.
	OutOfSync int32 `json:"outOfSync"`
	// Degraded: Argo CD health Degraded, Flux Ready False.
	Degraded int32 `json:"degraded"`
	// Missing: pairs with no generated object after the grace period.
	Missing int32 `json:"missing"`
	// Revision is the revision most clusters run.
	// +optional
	Revision string `json:"revision,omitempty"`
	// Revisions are the revisions the clusters run, most common first, at most 5.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5
	Revisions []RevisionCount `json:"revisions,omitempty"`
	// NotHealthy names at most 20 clusters that are not healthy, the worst first, each with a reason.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	NotHealthy []ClusterState `json:"notHealthy,omitempty"`
}

// RevisionCount is how many clusters run a revision.
type RevisionCount struct {
	Revision string `json:"revision"`
	Clusters int32  `json:"clusters"`
}

// ClusterState is one cluster's pair that is not healthy.
type ClusterState struct {
	// Cluster is the CAPI Cluster, "<namespace>/<name>".
	Cluster string `json:"cluster"`
	// State is Progressing, OutOfSync, Degraded or Missing.
	State string `json:"state"`
	// Reason says why, in a few words (from Argo CD's health message or Flux's Ready condition).
	// +optional
	Reason string `json:"reason,omitempty"`
}

// Workload is a unit the plugin server fans out across registered clusters.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=fbwl,categories=fleetbridge
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Repo",type=string,JSONPath=`.spec.source.repoURL`
// +kubebuilder:printcolumn:name="Path",type=string,JSONPath=`.spec.source.path`
// +kubebuilder:printcolumn:name="Chart",type=string,JSONPath=`.spec.source.chart`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.source.targetRevision`,priority=1
// +kubebuilder:printcolumn:name="Clusters",type=integer,JSONPath=`.status.matchedClusters`
// +kubebuilder:printcolumn:name="Healthy",type=integer,JSONPath=`.status.fleet.healthy`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.fleet.revision`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.summary`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Workload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WorkloadSpec   `json:"spec,omitempty"`
	Status WorkloadStatus `json:"status,omitempty"`
}

// WorkloadList is a list of Workloads.
// +kubebuilder:object:root=true
type WorkloadList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Workload `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Workload{}, &WorkloadList{})
}
