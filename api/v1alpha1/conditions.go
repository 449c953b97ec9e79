package v1alpha1

// Condition types. Ready is kstatus's summary condition.
const (
	ReadyCondition = "Ready"
	// InputsTrimmedCondition is True on a Workload while a Flux ResourceSetInputProvider that asks
	// fleetbridge keeps fewer inputs than the answer has (its spec.filter.limit), so some of the Workload's
	// pairs never reach Flux. It is absent otherwise.
	InputsTrimmedCondition = "InputsTrimmed"
)

// Condition and Event reasons. An Event about a Cluster carries the same reason as the condition or
// failure entry that reports it, so `kubectl get events --field-selector reason=X` finds them.
const (
	// ReasonRegistered: every selected cluster is registered and current.
	ReasonRegistered = "Registered"
	// ReasonPartiallyRegistered: some selected clusters failed; see status.failures.
	ReasonPartiallyRegistered = "PartiallyRegistered"
	// ReasonProgressing: some selected clusters are not registered yet (for example, waiting for their control plane).
	ReasonProgressing = "Progressing"
	// ReasonNoClustersSelected: the selectors match no Cluster.
	ReasonNoClustersSelected = "NoClustersSelected"
	// ReasonSuspended: spec.suspend is true.
	ReasonSuspended = "Suspended"
	// ReasonInvalidSpec: the spec cannot be used (for example a name template that does not render).
	ReasonInvalidSpec = "InvalidSpec"

	// ReasonWaitingForControlPlane: the Cluster's control plane is not initialized yet.
	ReasonWaitingForControlPlane = "WaitingForControlPlane"
	// ReasonKubeconfigMissing: the CAPI <cluster>-kubeconfig Secret does not exist.
	ReasonKubeconfigMissing = "KubeconfigMissing"
	// ReasonKubeconfigInvalid: the kubeconfig cannot be parsed or used in the chosen mode.
	ReasonKubeconfigInvalid = "KubeconfigInvalid"
	// ReasonClusterUnreachable: the workload API server's /version probe failed.
	ReasonClusterUnreachable = "ClusterUnreachable"
	// ReasonAccessDenied: the workload cluster refused the CAPI credentials for a needed call.
	ReasonAccessDenied = "AccessDenied"
	// ReasonTokenRequestFailed: minting a ServiceAccount token failed.
	ReasonTokenRequestFailed = "TokenRequestFailed"
	// ReasonConflict: another Registration registers the same cluster into the same namespace.
	ReasonConflict = "Conflict"
	// ReasonWriteFailed: writing a secret on the management cluster failed.
	ReasonWriteFailed = "WriteFailed"
	// ReasonNamespaceNotAllowed: an output targets a namespace outside the controller's --secret-namespaces
	// (the namespaces its RBAC lets it write Secrets in).
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
	// ReasonMatched: a Workload is paired with at least one registered cluster.
	ReasonMatched = "Matched"
	// ReasonDeregistered: the cluster's secrets and workload-side credentials were removed.
	ReasonDeregistered = "Deregistered"
	// ReasonExecNotAllowed: the CAPI kubeconfig uses an exec plugin that is not in both the controller's
	// --allowed-exec-commands and the Registration's spec.credentials.allowedExecCommands.
	ReasonExecNotAllowed = "ExecNotAllowed"
	// ReasonInsecureTransport: the CAPI kubeconfig turns TLS verification off or names an http:// server,
	// and the Registration does not set spec.credentials.allowInsecure.
	ReasonInsecureTransport = "InsecureTransport"
	// ReasonDeniedAddress: the workload API server's address is in the controller's --denied-cidrs
	// (link-local by default, where cloud metadata services answer).
	ReasonDeniedAddress = "DeniedAddress"
	// ReasonRepaired: an output someone else changed or deleted was written back as fleetbridge last wrote it.
	ReasonRepaired = "Repaired"
	// ReasonInputLimitExceeded: an answer to a Flux ResourceSetInputProvider has more inputs than its
	// spec.filter.limit, and Flux Operator keeps only the first ones (a Warning Event on the provider, and
	// InputsTrimmed on the Workloads whose pairs are dropped).
	ReasonInputLimitExceeded = "InputLimitExceeded"
	// ReasonProfileConflict: a ClusterProfile with the Cluster's profile name exists in the profile
	// namespace and is not fleetbridge's; it is left as it is (a Warning Event on the Cluster).
	ReasonProfileConflict = "ProfileConflict"
	// ReasonProfilePublishFailed: the Cluster's ClusterProfile could not be written (a Warning Event on
	// the Cluster); its registration is not affected.
	ReasonProfilePublishFailed = "ProfilePublishFailed"
	// ReasonControlPlaneAvailable, ReasonControlPlaneNotAvailable and ReasonControlPlaneAvailabilityUnknown
	// are the reasons of a ClusterProfile's ControlPlaneHealthy condition, from Cluster API's
	// ControlPlaneAvailable condition; ReasonClusterUnreachable overrides them when the probe fails.
	ReasonControlPlaneAvailable           = "ControlPlaneAvailable"
	ReasonControlPlaneNotAvailable        = "ControlPlaneNotAvailable"
	ReasonControlPlaneAvailabilityUnknown = "ControlPlaneAvailabilityUnknown"
)
