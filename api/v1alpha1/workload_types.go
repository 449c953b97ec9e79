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
}

// Workload is a unit the plugin server fans out across registered clusters.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=fbwl,categories=fleetbridge
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Repo",type=string,JSONPath=`.spec.source.repoURL`
// +kubebuilder:printcolumn:name="Path",type=string,JSONPath=`.spec.source.path`
// +kubebuilder:printcolumn:name="Chart",type=string,JSONPath=`.spec.source.chart`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.spec.source.targetRevision`,priority=1
// +kubebuilder:printcolumn:name="Clusters",type=integer,JSONPath=`.status.matchedClusters`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
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
