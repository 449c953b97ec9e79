package plugin

import (
	"fmt"
	"os"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// Scope is what a token may read. The server enforces it: whatever a request asks, its answer holds
// only Workloads from the scope's namespaces, paired with clusters of the scope's Registrations that its
// cluster selector matches.
type Scope struct {
	// Tenant names the scope; empty for the full scope.
	Tenant string
	// WorkloadNamespaces are the namespaces whose Workloads the token reads; nil means every namespace.
	WorkloadNamespaces []string
	// Registrations whose clusters the token reads; nil means every Registration.
	Registrations []string
	// ClusterSelector, when set, must match a cluster's labels as well.
	ClusterSelector labels.Selector
}

// AdminScope is the full scope: every Workload and every cluster.
func AdminScope() *Scope { return &Scope{} }

func (s *Scope) allowsNamespace(ns string) bool {
	return s.WorkloadNamespaces == nil || slices.Contains(s.WorkloadNamespaces, ns)
}

func (s *Scope) allowsRegistration(name string) bool {
	return s.Registrations == nil || slices.Contains(s.Registrations, name)
}

// String names the scope in errors: only the tenant's own namespaces and Registrations, which the
// token's holder configured or was given.
func (s *Scope) String() string {
	if s.Tenant == "" {
		return "the full scope"
	}
	out := fmt.Sprintf("tenant %s (workload namespaces %s; registrations %s", s.Tenant,
		strings.Join(s.WorkloadNamespaces, ", "), strings.Join(s.Registrations, ", "))
	if s.ClusterSelector != nil {
		out += "; clusters " + s.ClusterSelector.String()
	}
	return out + ")"
}

// TenantsFile is the tenants file's format (a mounted ConfigMap key, written by the Helm chart from
// plugin.tenants):
//
//	tenants:
//	- name: team-a
//	  workloadNamespaces: [team-a]
//	  registrations: [team-a]
//	  clusterSelector: {matchLabels: {team: a}}   # optional
type TenantsFile struct {
	Tenants []Tenant `json:"tenants"`
}

// Tenant declares one tenant's scope.
type Tenant struct {
	// Name is a DNS label; its token files are named "<name>" or "<name>.<anything>".
	Name string `json:"name"`
	// WorkloadNamespaces are the namespaces whose Workloads the tenant reads (at least one).
	WorkloadNamespaces []string `json:"workloadNamespaces"`
	// Registrations whose clusters the tenant reads (at least one).
	Registrations []string `json:"registrations"`
	// ClusterSelector narrows the clusters further.
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`
}

// ParseTenants checks a tenants file's content as the server reads it (what the Helm chart writes, for
// its tests and for tools that write the file).
func ParseTenants(raw []byte) error {
	_, err := parseTenants(raw, "file")
	return err
}

// readTenants reads a tenants file strictly: an unknown field or a tenant without namespaces or
// Registrations is an error, never a wider scope.
func readTenants(path string) (map[string]*Scope, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plugin tenants: %w", err)
	}
	return parseTenants(raw, path)
}

// parseTenants parses a tenants file's content; path names it in errors.
func parseTenants(raw []byte, path string) (map[string]*Scope, error) {
	var file TenantsFile
	if err := yaml.UnmarshalStrict(raw, &file); err != nil {
		return nil, fmt.Errorf("plugin tenants %s: %w", path, err)
	}
	out := map[string]*Scope{}
	for i, t := range file.Tenants {
		field := fmt.Sprintf("plugin tenants %s: tenants[%d]", path, i)
		if errs := validation.IsDNS1123Label(t.Name); len(errs) > 0 {
			return nil, fmt.Errorf("%s.name %q: %s", field, t.Name, strings.Join(errs, "; "))
		}
		if t.Name == AdminTokenFile {
			return nil, fmt.Errorf("%s.name: %q is the full-scope token's name", field, t.Name)
		}
		if out[t.Name] != nil {
			return nil, fmt.Errorf("%s.name: %s is declared twice", field, t.Name)
		}
		if len(t.WorkloadNamespaces) == 0 || slices.Contains(t.WorkloadNamespaces, "") {
			return nil, fmt.Errorf("%s.workloadNamespaces: name at least one namespace", field)
		}
		if len(t.Registrations) == 0 || slices.Contains(t.Registrations, "") {
			return nil, fmt.Errorf("%s.registrations: name at least one Registration", field)
		}
		scope := &Scope{Tenant: t.Name, WorkloadNamespaces: slices.Clone(t.WorkloadNamespaces), Registrations: slices.Clone(t.Registrations)}
		if t.ClusterSelector != nil {
			var err error
			if scope.ClusterSelector, err = metav1.LabelSelectorAsSelector(t.ClusterSelector); err != nil {
				return nil, fmt.Errorf("%s.clusterSelector: %w", field, err)
			}
		}
		out[t.Name] = scope
	}
	return out, nil
}

// workloadRef is a Workload a request names: "name", or "namespace/name".
type workloadRef struct{ namespace, name string }

// query is what a request asks for, before the scope and the fleet resolve it.
type query struct {
	workloads         []workloadRef
	workloadSelector  labels.Selector
	workloadNamespace string
	clusterSelector   labels.Selector
	registration      string
	readyOnly         bool
}

// filter resolves a query within a scope against a snapshot. A namespace or Registration the scope does
// not allow is a 403 naming the scope; a Workload name found in two allowed namespaces is a 400. The
// filter it returns is an intersection with the scope, so no pair outside it can pass.
func (q query) filter(scope *Scope, snap *fleet.Snapshot) (fleet.Filter, error) {
	f := fleet.Filter{WorkloadSelector: q.workloadSelector, ReadyOnly: q.readyOnly,
		WorkloadNamespaces: scope.WorkloadNamespaces, Registrations: scope.Registrations}
	outside := func(what string) error {
		return newError(kindForbidden, fmt.Sprintf("%s is outside the token's scope, %s", what, scope))
	}
	if q.workloadNamespace != "" {
		if !scope.allowsNamespace(q.workloadNamespace) {
			return f, outside("workloadNamespace " + q.workloadNamespace)
		}
		f.WorkloadNamespaces = []string{q.workloadNamespace}
	}
	if q.registration != "" {
		if !scope.allowsRegistration(q.registration) {
			return f, outside("registration " + q.registration)
		}
		f.Registrations = []string{q.registration}
	}
	for _, sel := range []labels.Selector{scope.ClusterSelector, q.clusterSelector} {
		if sel != nil {
			f.ClusterSelectors = append(f.ClusterSelectors, sel)
		}
	}
	for _, ref := range q.workloads {
		if ref.namespace == "" {
			ref.namespace = q.workloadNamespace
		}
		if ref.namespace != "" {
			if !scope.allowsNamespace(ref.namespace) {
				return f, outside("workload " + ref.namespace + "/" + ref.name)
			}
			if q.workloadNamespace != "" && ref.namespace != q.workloadNamespace {
				return f, newError(kindBadRequest, fmt.Sprintf("workload %s/%s is not in workloadNamespace %s", ref.namespace, ref.name, q.workloadNamespace))
			}
			f.Workloads = append(f.Workloads, types.NamespacedName{Namespace: ref.namespace, Name: ref.name})
			continue
		}
		// A bare name is resolved among the scope's namespaces only.
		var found []string
		for i := range snap.Workloads {
			w := &snap.Workloads[i]
			if w.Name == ref.name && scope.allowsNamespace(w.Namespace) {
				found = append(found, w.Namespace)
			}
		}
		switch len(found) {
		case 0:
			f.Workloads = append(f.Workloads, types.NamespacedName{Name: ref.name}) // matches nothing
		case 1:
			f.Workloads = append(f.Workloads, types.NamespacedName{Namespace: found[0], Name: ref.name})
		default:
			return f, newError(kindBadRequest, fmt.Sprintf("workload %s is in namespaces %s; name one with workloadNamespace or as namespace/name",
				ref.name, strings.Join(found, ", ")))
		}
	}
	return f, nil
}
