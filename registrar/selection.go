package registrar

import (
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

// selection is what the Registrations ask of one Cluster. What an unlisted Registration wrote for the
// cluster is removed.
type selection struct {
	// active registrations register the cluster, in the order they were created.
	active []*fleetv1.Registration
	// frozen registrations select the cluster but are suspended: what they wrote stays as it is.
	frozen map[string]bool
	// conflicts maps a selecting Registration that lost a conflict to the winner and the reason's message.
	conflicts map[string]registrationConflict
}

// registrationConflict is why one Registration does not register a Cluster another one does.
type registrationConflict struct {
	winner, message string
}

// selects says whether a Registration selects a Cluster whose namespace has nsLabels.
func selects(reg *fleetv1.Registration, cluster *clusterv1.Cluster, nsLabels map[string]string) (bool, error) {
	sel, err := selectorsOf(reg)
	if err != nil {
		return false, err
	}
	return sel.matches(cluster, nsLabels), nil
}

// registrationSelectors are a Registration's parsed selectors, for matching many Clusters.
type registrationSelectors struct {
	namespaces, clusters labels.Selector
}

func selectorsOf(reg *fleetv1.Registration) (registrationSelectors, error) {
	nsSel, err := selectorOrEverything(reg.Spec.NamespaceSelector)
	if err != nil {
		return registrationSelectors{}, fmt.Errorf("spec.namespaceSelector: %w", err)
	}
	clusterSel, err := selectorOrEverything(reg.Spec.ClusterSelector)
	if err != nil {
		return registrationSelectors{}, fmt.Errorf("spec.clusterSelector: %w", err)
	}
	return registrationSelectors{namespaces: nsSel, clusters: clusterSel}, nil
}

func (s registrationSelectors) matches(cluster *clusterv1.Cluster, nsLabels map[string]string) bool {
	return s.namespaces.Matches(labels.Set(nsLabels)) && s.clusters.Matches(labels.Set(cluster.Labels))
}

func selectorOrEverything(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

// selectFor decides which Registrations register a Cluster. Two Registrations that would write the same
// Argo CD namespace, or mint through the same workload ServiceAccount, conflict: first come, first
// served, the one created first (then the one whose name sorts first) wins, and the other is reported. Deleted and invalid Registrations are not
// active; suspended ones still claim their namespace and ServiceAccount, so nothing else duplicates the
// secrets they keep.
func selectFor(cluster *clusterv1.Cluster, nsLabels map[string]string, regs []fleetv1.Registration) selection {
	sorted := make([]*fleetv1.Registration, 0, len(regs))
	for i := range regs {
		sorted = append(sorted, &regs[i])
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})

	out := selection{conflicts: map[string]registrationConflict{}, frozen: map[string]bool{}}
	argoOwner := map[string]string{}           // argocd namespace -> registration
	serviceAccountOwner := map[string]string{} // workload SA namespace/name -> registration
	for _, reg := range sorted {
		if !reg.DeletionTimestamp.IsZero() {
			continue
		}
		ok, err := selects(reg, cluster, nsLabels)
		if err != nil || !ok {
			continue
		}
		if reg.Spec.ArgoCD != nil {
			ns := argoNamespace(reg)
			if winner, taken := argoOwner[ns]; taken {
				out.conflicts[reg.Name] = registrationConflict{winner, fmt.Sprintf("Registration %s already registers this cluster in Argo CD namespace %s", winner, ns)}
				continue
			}
		}
		if credentialsMode(reg) == fleetv1.CredentialsServiceAccountToken {
			sa := serviceAccountKey(reg)
			if winner, taken := serviceAccountOwner[sa]; taken {
				out.conflicts[reg.Name] = registrationConflict{winner, fmt.Sprintf("Registration %s already uses workload ServiceAccount %s; set spec.credentials.serviceAccount.name", winner, sa)}
				continue
			}
			serviceAccountOwner[sa] = reg.Name
		}
		if reg.Spec.ArgoCD != nil {
			argoOwner[argoNamespace(reg)] = reg.Name
		}
		if reg.Spec.Suspend {
			out.frozen[reg.Name] = true
			continue
		}
		out.active = append(out.active, reg)
	}
	return out
}
