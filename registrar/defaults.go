package registrar

import (
	"time"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

// Defaults the API server applies from the CRD schema; repeated here so objects built in Go (and
// objects written before a default existed) behave the same.
const (
	defaultArgoNamespace      = "argocd"
	defaultNameTemplate       = "{{ .Namespace }}.{{ .Name }}"
	defaultFluxSecretTemplate = "{{ .Namespace }}.{{ .Name }}.kubeconfig"
	defaultTokenTTL           = 24 * time.Hour
	minTokenTTL               = 10 * time.Minute
	defaultServiceAccountNS   = "kube-system"
	defaultServiceAccountName = "fleetbridge-argocd"
	defaultClusterRole        = "cluster-admin"
)

func argoNamespace(reg *fleetv1.Registration) string {
	if reg.Spec.ArgoCD == nil || reg.Spec.ArgoCD.Namespace == "" {
		return defaultArgoNamespace
	}
	return reg.Spec.ArgoCD.Namespace
}

func nameTemplate(reg *fleetv1.Registration) string {
	if reg.Spec.ArgoCD == nil || reg.Spec.ArgoCD.NameTemplate == "" {
		return defaultNameTemplate
	}
	return reg.Spec.ArgoCD.NameTemplate
}

func fluxSecretTemplate(reg *fleetv1.Registration) string {
	if reg.Spec.Flux == nil || reg.Spec.Flux.SecretNameTemplate == "" {
		return defaultFluxSecretTemplate
	}
	return reg.Spec.Flux.SecretNameTemplate
}

func credentialsMode(reg *fleetv1.Registration) fleetv1.CredentialsMode {
	if reg.Spec.Credentials.Mode == "" {
		return fleetv1.CredentialsServiceAccountToken
	}
	return reg.Spec.Credentials.Mode
}

func tokenTTL(reg *fleetv1.Registration) time.Duration {
	ttl := defaultTokenTTL
	if reg.Spec.Credentials.TokenTTL != nil {
		ttl = reg.Spec.Credentials.TokenTTL.Duration
	}
	return max(ttl, minTokenTTL)
}

func serviceAccount(reg *fleetv1.Registration) (namespace, name string) {
	namespace, name = reg.Spec.Credentials.ServiceAccount.Namespace, reg.Spec.Credentials.ServiceAccount.Name
	if namespace == "" {
		namespace = defaultServiceAccountNS
	}
	if name == "" {
		name = defaultServiceAccountName
	}
	return namespace, name
}

func serviceAccountKey(reg *fleetv1.Registration) string {
	ns, name := serviceAccount(reg)
	return ns + "/" + name
}

func clusterRole(reg *fleetv1.Registration) string {
	if reg.Spec.Credentials.ClusterRole == "" {
		return defaultClusterRole
	}
	return reg.Spec.Credentials.ClusterRole
}
