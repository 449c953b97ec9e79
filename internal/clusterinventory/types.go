// Package clusterinventory owns SIG Multicluster's cluster inventory wire format that fleetbridge writes:
// the ClusterProfile (multicluster.x-k8s.io/v1alpha1, sigs.k8s.io/cluster-inventory-api v0.1.2). The
// types are fleetbridge's own and hold only the fields it writes; the module is not a dependency.
// Tests apply the upstream CRD (hack/crds/clusterprofile) to a real API server and write these types
// through it, so its schema checks them.
// +kubebuilder:object:generate=true
// +groupName=multicluster.x-k8s.io
package clusterinventory

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the cluster inventory API's group and version.
	GroupVersion = schema.GroupVersion{Group: "multicluster.x-k8s.io", Version: "v1alpha1"}

	// SchemeBuilder registers ClusterProfile with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds ClusterProfile to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

const (
	// LabelClusterManager names the manager of a profile, as the API recommends on every profile.
	LabelClusterManager = "x-k8s.io/cluster-manager"
	// ConditionControlPlaneHealthy is the API's predefined condition: the cluster's control plane
	// answers and is healthy.
	ConditionControlPlaneHealthy = "ControlPlaneHealthy"
)

// ClusterProfile is one cluster's entry in the inventory.
// +kubebuilder:object:root=true
type ClusterProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterProfileSpec   `json:"spec"`
	Status ClusterProfileStatus `json:"status,omitempty"`
}

// ClusterProfileSpec names the manager; spec.clusterManager is immutable.
type ClusterProfileSpec struct {
	DisplayName    string         `json:"displayName,omitempty"`
	ClusterManager ClusterManager `json:"clusterManager"`
}

// ClusterManager is the manager that publishes the profile.
type ClusterManager struct {
	Name string `json:"name"`
}

// ClusterProfileStatus is what the manager knows of the cluster.
type ClusterProfileStatus struct {
	Conditions          []metav1.Condition   `json:"conditions,omitempty"`
	Version             ClusterVersion       `json:"version,omitempty"`
	Properties          []Property           `json:"properties,omitempty"`
	CredentialProviders []CredentialProvider `json:"credentialProviders,omitempty"`
}

// ClusterVersion is the cluster's version.
type ClusterVersion struct {
	Kubernetes string `json:"kubernetes,omitempty"`
}

// Property is one named fact about the cluster (value 1 to 1024 bytes).
type Property struct {
	Name             string      `json:"name"`
	Value            string      `json:"value"`
	LastObservedTime metav1.Time `json:"lastObservedTime,omitempty"`
}

// CredentialProvider says how to reach the cluster: a kubeconfig cluster entry (server and CA), never
// a user credential; a consumer gets its credential from the named provider.
type CredentialProvider struct {
	Name    string  `json:"name"`
	Cluster Cluster `json:"cluster"`
}

// Cluster is the part of client-go's clientcmd/api/v1 Cluster that fleetbridge fills.
type Cluster struct {
	Server                   string `json:"server"`
	TLSServerName            string `json:"tls-server-name,omitempty"`
	InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify,omitempty"`
	CertificateAuthorityData []byte `json:"certificate-authority-data,omitempty"`
	ProxyURL                 string `json:"proxy-url,omitempty"`
	DisableCompression       bool   `json:"disable-compression,omitempty"`
}

// ClusterProfileList is a list of ClusterProfiles.
// +kubebuilder:object:root=true
type ClusterProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterProfile `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterProfile{}, &ClusterProfileList{})
}
