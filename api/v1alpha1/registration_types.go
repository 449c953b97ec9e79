package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CredentialsMode says what a registered cluster's Argo CD and Flux secrets authenticate with.
// +kubebuilder:validation:Enum=ServiceAccountToken;Kubeconfig
type CredentialsMode string

const (
	// CredentialsServiceAccountToken mints a scoped, rotating ServiceAccount token on the workload cluster
	// with the CAPI admin credentials, which themselves never leave the controller's memory.
	CredentialsServiceAccountToken CredentialsMode = "ServiceAccountToken"
	// CredentialsKubeconfig converts the CAPI kubeconfig's own credentials and re-syncs them whenever
	// Cluster API rewrites the kubeconfig Secret.
	CredentialsKubeconfig CredentialsMode = "Kubeconfig"
)

// RegistrationSpec selects Cluster API clusters and says where and how to register them.
// +kubebuilder:validation:XValidation:rule="has(self.argocd) || has(self.flux)",message="at least one of argocd or flux must be set"
type RegistrationSpec struct {
	// NamespaceSelector selects the namespaces whose Clusters are considered. Empty or absent selects every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ClusterSelector selects Clusters by their labels. Empty or absent selects every Cluster in the selected namespaces.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`

	// Labels says which labels of the CAPI Cluster are copied onto every secret written for it, and which
	// static labels are added, so ApplicationSet cluster generators and selectors can use them.
	// +optional
	Labels LabelPolicy `json:"labels,omitempty"`

	// ArgoCD registers each selected cluster as an Argo CD cluster Secret.
	// +optional
	ArgoCD *ArgoCDTarget `json:"argocd,omitempty"`

	// Flux writes a self-contained kubeconfig Secret for each selected cluster into Flux tenant namespaces.
	// +optional
	Flux *FluxTarget `json:"flux,omitempty"`

	// Credentials says what the written secrets authenticate with.
	// +optional
	// +kubebuilder:default={}
	Credentials Credentials `json:"credentials,omitempty"`

	// Suspend stops reconciliation of this Registration; existing secrets are left as they are.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// LabelPolicy says which labels reach the secrets fleetbridge writes.
type LabelPolicy struct {
	// Propagate lists label keys of the CAPI Cluster to copy. An entry ending in "*" matches every key
	// with that prefix ("team/*", "topology.example.com/*"); "*" alone copies every label.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	Propagate []string `json:"propagate,omitempty"`

	// Static labels added to every secret written for this Registration. Keys under fleetbridge.io/ are reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('fleetbridge.io/'))",message="keys under fleetbridge.io/ are reserved"
	Static map[string]string `json:"static,omitempty"`
}

// ArgoCDTarget says where and how clusters are registered with Argo CD.
type ArgoCDTarget struct {
	// Namespace is Argo CD's own namespace, where cluster Secrets must live.
	// +optional
	// +kubebuilder:default=argocd
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// Project restricts each registered cluster to one Argo CD AppProject. Empty means every project may use it.
	// +optional
	Project string `json:"project,omitempty"`

	// NameTemplate renders the cluster's Argo CD name (what Applications use in destination.name).
	// It is a Go template over .Namespace and .Name of the CAPI Cluster, and the result must be unique.
	// The default, "<namespace>.<name>", cannot collide: namespaces contain no dots. A name another
	// cluster Secret already holds stays with it (first come, first served); the newcomer gets Conflict.
	// +optional
	// +kubebuilder:default="{{ .Namespace }}.{{ .Name }}"
	// +kubebuilder:validation:MinLength=1
	NameTemplate string `json:"nameTemplate,omitempty"`

	// Namespaces restricts Argo CD to these namespaces of the workload cluster. In ServiceAccountToken mode
	// the ServiceAccount is then bound with RoleBindings in exactly these namespaces instead of a ClusterRoleBinding.
	// +optional
	// +listType=set
	Namespaces []string `json:"namespaces,omitempty"`

	// ClusterResources lets Argo CD manage cluster-scoped resources when Namespaces is set.
	// +optional
	ClusterResources bool `json:"clusterResources,omitempty"`
}

// FluxTarget says where Flux kubeconfig Secrets are written.
// +kubebuilder:validation:XValidation:rule="(has(self.namespaces) && size(self.namespaces) > 0) || has(self.namespaceSelector)",message="set namespaces or namespaceSelector"
type FluxTarget struct {
	// Namespaces lists the namespaces (Flux tenants) that get a kubeconfig Secret for every registered cluster.
	// +optional
	// +listType=set
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceSelector adds every namespace whose labels match.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// SecretNameTemplate renders the Secret's name, a Go template over .Namespace and .Name of the CAPI Cluster.
	// Kustomizations refer to it with spec.kubeConfig.secretRef (meta.KubeConfigReference), key "value".
	// The default, "<namespace>.<name>.kubeconfig", names each Cluster's Secret apart: namespaces contain no dots.
	// +optional
	// +kubebuilder:default="{{ .Namespace }}.{{ .Name }}.kubeconfig"
	// +kubebuilder:validation:MinLength=1
	SecretNameTemplate string `json:"secretNameTemplate,omitempty"`
}

// Credentials says what the written secrets authenticate with.
// +kubebuilder:validation:XValidation:rule="!has(self.tokenTTL) || duration(self.tokenTTL) >= duration('10m')",message="tokenTTL must be at least 10m"
type Credentials struct {
	// Mode is ServiceAccountToken (default: a scoped token minted and rotated on the workload cluster) or
	// Kubeconfig (the CAPI kubeconfig's own credentials, converted).
	// +optional
	// +kubebuilder:default=ServiceAccountToken
	Mode CredentialsMode `json:"mode,omitempty"`

	// TokenTTL is the lifetime requested for minted tokens. They are renewed in renewal windows shared by the whole fleet (hourly, or every two thirds of a TTL under 90m), between 10% and 85% of the lifetime, so Argo CD sees a fleet's rotations together.
	// +optional
	// +kubebuilder:default="24h"
	TokenTTL *metav1.Duration `json:"tokenTTL,omitempty"`

	// ServiceAccount is created on each workload cluster and bound to ClusterRole.
	// +optional
	// +kubebuilder:default={}
	ServiceAccount ServiceAccountReference `json:"serviceAccount,omitempty"`

	// ClusterRole is the role granted to the ServiceAccount on the workload cluster
	// (cluster-admin by default, as `argocd cluster add` does).
	// +optional
	// +kubebuilder:default=cluster-admin
	ClusterRole string `json:"clusterRole,omitempty"`

	// AllowInsecure registers clusters whose CAPI kubeconfig turns TLS verification off
	// (insecure-skip-tls-verify) or names an http:// server. Without it they fail with InsecureTransport;
	// with it, status and the Cluster's Event say that verification is off.
	// +optional
	AllowInsecure bool `json:"allowInsecure,omitempty"`

	// AllowedExecCommands lists the exec credential plugins (by command name, such as argocd-k8s-auth)
	// that a CAPI kubeconfig may use, within the controller's --allowed-exec-commands. In Kubeconfig
	// mode such a plugin is forwarded to Argo CD, which runs it; the controller cannot verify that
	// credential itself. Any other exec plugin fails with ExecNotAllowed, in both modes.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	AllowedExecCommands []string `json:"allowedExecCommands,omitempty"`
}

// ServiceAccountReference names a ServiceAccount on a workload cluster.
type ServiceAccountReference struct {
	// +optional
	// +kubebuilder:default=kube-system
	Namespace string `json:"namespace,omitempty"`
	// +optional
	// +kubebuilder:default=fleetbridge-argocd
	Name string `json:"name,omitempty"`
}

// MaxReportedFailures bounds status.failures so a large fleet cannot overflow etcd's object size limit.
const MaxReportedFailures = 20

// RegistrationStatus is the observed state of a Registration. It holds counts and a bounded list of
// failures, never a per-cluster list.
type RegistrationStatus struct {
	// ObservedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready summarises the Registration.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Selected counts the Clusters this Registration selects.
	// +optional
	Selected int32 `json:"selected"`

	// Registered counts the selected Clusters whose secrets are written and current.
	// +optional
	Registered int32 `json:"registered"`

	// Failing counts the selected Clusters that could not be registered or refreshed.
	// +optional
	Failing int32 `json:"failing"`

	// Insecure counts the registered Clusters reached without TLS verification (spec.credentials.allowInsecure).
	// +optional
	Insecure int32 `json:"insecure,omitempty"`

	// Unverified counts the registered Clusters whose credential is an allowlisted exec plugin that
	// Argo CD runs: the controller could not verify it itself.
	// +optional
	Unverified int32 `json:"unverified,omitempty"`

	// Conflicts lists, up to 20 and sorted, the Registrations that select some of this Registration's
	// Clusters for the same Argo CD namespace or workload ServiceAccount. This one came first and keeps
	// them; they report Conflict for those Clusters.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	Conflicts []string `json:"conflicts,omitempty"`

	// Failures lists up to 20 failing Clusters, sorted by namespace and name.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	Failures []ClusterFailure `json:"failures,omitempty"`
}

// ClusterFailure says why one Cluster is not registered.
type ClusterFailure struct {
	// Namespace of the CAPI Cluster.
	Namespace string `json:"namespace"`
	// Name of the CAPI Cluster.
	Name string `json:"name"`
	// Reason is a CamelCase reason, the same as the Event reason on the Cluster.
	Reason string `json:"reason"`
	// Message says what failed, without credentials.
	// +optional
	Message string `json:"message,omitempty"`
}

// Registration registers Cluster API clusters with Argo CD and Flux.
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="the name must fit a label value (63 characters): it labels every object written for it"
// +kubebuilder:resource:scope=Cluster,shortName=fbreg,categories=fleetbridge
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.credentials.mode`
// +kubebuilder:printcolumn:name="Selected",type=integer,JSONPath=`.status.selected`
// +kubebuilder:printcolumn:name="Registered",type=integer,JSONPath=`.status.registered`
// +kubebuilder:printcolumn:name="Failing",type=integer,JSONPath=`.status.failing`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Registration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RegistrationSpec   `json:"spec,omitempty"`
	Status RegistrationStatus `json:"status,omitempty"`
}

// RegistrationList is a list of Registrations.
// +kubebuilder:object:root=true
type RegistrationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Registration `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Registration{}, &RegistrationList{})
}
