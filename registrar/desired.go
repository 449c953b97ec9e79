package registrar

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/flux"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// clusterFacts are what the probe learned about a workload cluster.
type clusterFacts struct {
	KubernetesVersion string
}

// tokenTimes are a minted token's issue and expiry times. They are written on the Secrets that carry it
// for Argo CD admins and tenants to see; the token source trusts only its memory and a token's verified
// claims (tokenSource).
type tokenTimes struct {
	IssuedAt, ExpiresAt time.Time
}

// argoSecretName is the Argo CD cluster Secret's name: readable, and unique across CAPI namespaces
// because the hash covers the namespace/name pair ("a-b"/"c" and "a"/"b-c" differ).
func argoSecretName(cluster types.NamespacedName) string {
	return fmt.Sprintf("fleetbridge-%s-%s-%s", cluster.Namespace, cluster.Name, owned.ShortHash(cluster.Namespace, cluster.Name))
}

// templateData is what name templates see.
type templateData struct {
	Namespace, Name string
	Labels          map[string]string
}

// renderTemplate renders a name template for a Cluster; the result must be a non-empty single line.
func renderTemplate(field, text string, cluster *clusterv1.Cluster) (string, error) {
	tmpl, err := template.New(field).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("%s does not parse: %w", field, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, templateData{Namespace: cluster.Namespace, Name: cluster.Name, Labels: cluster.Labels}); err != nil {
		return "", fmt.Errorf("%s does not render: %w", field, err)
	}
	out := strings.TrimSpace(buf.String())
	if out == "" || strings.ContainsAny(out, "\n\r") {
		return "", fmt.Errorf("%s renders an empty or multi-line name", field)
	}
	return out, nil
}

// reservedLabelPrefixes may never be copied from a Cluster: they would let a Cluster's labels change
// what a secret is (its Argo CD type) or whom it belongs to.
var reservedLabelPrefixes = []string{"fleetbridge.io/", "argocd.argoproj.io/", "reconcile.fluxcd.io/"}

// propagatedLabels are the Cluster labels the Registration asks to copy.
func propagatedLabels(patterns []string, clusterLabels map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range clusterLabels {
		if hasAnyPrefix(k, reservedLabelPrefixes) {
			continue
		}
		for _, p := range patterns {
			if p == k || (strings.HasSuffix(p, "*") && strings.HasPrefix(k, strings.TrimSuffix(p, "*"))) {
				out[k] = v
				break
			}
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// factLabels describe the cluster for selectors; values that are not valid label values are left out.
func factLabels(cluster *clusterv1.Cluster, facts clusterFacts) map[string]string {
	out := map[string]string{}
	put := func(k, v string) {
		v = strings.ReplaceAll(v, "+", "_")
		if v != "" && len(validation.IsValidLabelValue(v)) == 0 {
			out[k] = v
		}
	}
	put(owned.LabelClusterClass, cluster.Spec.Topology.ClassRef.Name)
	put(owned.LabelInfrastructureKind, cluster.Spec.InfrastructureRef.Kind)
	return out
}

// record is what a Secret written for one Registration and Cluster says about the cluster (owned.Record).
// The Secret is written right after a successful probe, so it is reachable. The server is the one the
// Argo CD Secret's data holds (no trailing slash), on Flux outputs too, so both outputs of a cluster
// say the same.
func record(reg *fleetv1.Registration, cluster *clusterv1.Cluster, output, server string, t *tokenTimes, facts clusterFacts) owned.Record {
	r := owned.Record{Registration: reg.Name, Cluster: types.NamespacedName{Namespace: cluster.Namespace, Name: cluster.Name},
		Output: output, Server: strings.TrimSuffix(server, "/"), KubernetesVersion: facts.KubernetesVersion, Reachable: true}
	if t != nil {
		r.TokenIssuedAt, r.TokenExpiresAt = t.IssuedAt, t.ExpiresAt
	}
	return r
}

// secretLabels are every label on a secret written for one Registration and Cluster. The record's
// labels (ownership) are applied last so nothing can override them.
func secretLabels(reg *fleetv1.Registration, cluster *clusterv1.Cluster, facts clusterFacts, rec owned.Record) map[string]string {
	out := propagatedLabels(reg.Spec.Labels.Propagate, cluster.Labels)
	for k, v := range reg.Spec.Labels.Static {
		if !hasAnyPrefix(k, reservedLabelPrefixes) {
			out[k] = v
		}
	}
	for k, v := range factLabels(cluster, facts) {
		out[k] = v
	}
	for k, v := range rec.Labels() {
		out[k] = v
	}
	return out
}

// desiredArgoSecret is the Argo CD cluster Secret for one Registration and Cluster.
func desiredArgoSecret(reg *fleetv1.Registration, cluster *clusterv1.Cluster, server string, config argocd.ClusterConfig,
	token *tokenTimes, facts clusterFacts) (*corev1.Secret, error) {
	name, err := renderTemplate("spec.argocd.nameTemplate", nameTemplate(reg), cluster)
	if err != nil {
		return nil, err
	}
	data, err := argocd.ClusterSecretData{
		Name:             name,
		Server:           server,
		Project:          reg.Spec.ArgoCD.Project,
		Namespaces:       reg.Spec.ArgoCD.Namespaces,
		ClusterResources: reg.Spec.ArgoCD.ClusterResources,
		Config:           config,
	}.Data()
	if err != nil {
		return nil, err
	}
	rec := record(reg, cluster, owned.OutputArgoCD, server, token, facts)
	rec.ArgoCDName = name
	labels := secretLabels(reg, cluster, facts, rec)
	labels[argocd.SecretTypeLabel] = argocd.SecretTypeCluster
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   argoNamespace(reg),
			Name:        argoSecretName(types.NamespacedName{Namespace: cluster.Namespace, Name: cluster.Name}),
			Labels:      labels,
			Annotations: rec.Annotations(),
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}, nil
}

// desiredFluxSecrets are the kubeconfig Secrets for one Registration and Cluster, one per Flux namespace.
func desiredFluxSecrets(reg *fleetv1.Registration, cluster *clusterv1.Cluster, namespaces []string, kubeconfig []byte, server string,
	token *tokenTimes, facts clusterFacts) ([]*corev1.Secret, error) {
	name, err := renderTemplate("spec.flux.secretNameTemplate", fluxSecretTemplate(reg), cluster)
	if err != nil {
		return nil, err
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Errorf("spec.flux.secretNameTemplate renders %q, not a valid Secret name", name)
	}
	out := make([]*corev1.Secret, 0, len(namespaces))
	for _, ns := range namespaces {
		rec := record(reg, cluster, owned.OutputFlux, server, token, facts)
		labels := secretLabels(reg, cluster, facts, rec)
		labels[flux.WatchLabel] = flux.WatchEnabled
		out = append(out, &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: rec.Annotations()},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{flux.KubeconfigKey: kubeconfig},
		})
	}
	return out, nil
}
