package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// Pairs computes every cluster x workload pair the filter allows, ordered by workload namespace and name,
// then cluster namespace and name, so the same fleet always gives the same answer.
func Pairs(clusters []Cluster, workloads []Workload, f Filter) ([]Pair, error) {
	cs := make([]Cluster, 0, len(clusters))
	for i := range clusters {
		if f.AllowsCluster(&clusters[i]) {
			cs = append(cs, clusters[i])
		}
	}
	sort.Slice(cs, func(i, j int) bool { return clusterLess(cs[i], cs[j]) })
	ws := make([]Workload, 0, len(workloads))
	for i := range workloads {
		if f.AllowsWorkload(&workloads[i]) {
			ws = append(ws, workloads[i])
		}
	}
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].Namespace != ws[j].Namespace {
			return ws[i].Namespace < ws[j].Namespace
		}
		return ws[i].Name < ws[j].Name
	})

	var out []Pair
	for _, w := range ws {
		// A cluster registered by two Registrations (two Argo CD namespaces) pairs once per workload: the
		// Registration whose name sorts first, unless the workload names one.
		seen := map[[2]string]bool{}
		for _, c := range cs {
			if !Matches(w, c) || seen[[2]string{c.Namespace, c.Name}] {
				continue
			}
			seen[[2]string{c.Namespace, c.Name}] = true
			p, err := pair(w, c)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// Matches says whether a Workload deploys to a cluster.
func Matches(w Workload, c Cluster) bool {
	if w.ClusterSelector == nil || (w.Registration != "" && w.Registration != c.Registration) {
		return false
	}
	return w.ClusterSelector.Matches(labels.Set(c.Labels))
}

func clusterLess(a, b Cluster) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Registration < b.Registration
}

func pair(w Workload, c Cluster) (Pair, error) {
	values := MergedValues(w, c.Labels)
	valuesYAML, err := yaml.Marshal(values)
	if err != nil {
		return Pair{}, fmt.Errorf("workload %s/%s: values do not render as YAML: %w", w.Namespace, w.Name, err)
	}
	return Pair{
		Name:    PairName(w.Namespace, w.Name, c.Namespace, c.Name),
		Cluster: c,
		Workload: WorkloadParams{
			Name: w.Name, Namespace: w.Namespace, RepoURL: w.RepoURL, Path: w.Path, Chart: w.Chart,
			TargetRevision: w.TargetRevision, DestinationNamespace: w.DestinationNamespace,
			Values: values, ValuesYAML: string(valuesYAML),
		},
	}, nil
}

// MergedValues deep-merges, in order, the overrides whose selector matches the cluster's labels over the
// workload's values. Objects merge key by key; any other value (lists included) replaces.
func MergedValues(w Workload, clusterLabels map[string]string) map[string]any {
	out := deepCopy(w.Values)
	for _, o := range w.Overrides {
		if o.Selector != nil && o.Selector.Matches(labels.Set(clusterLabels)) {
			out = merge(out, o.Values)
		}
	}
	if out == nil {
		out = map[string]any{}
	}
	return out
}

func merge(dst, src map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				dst[k] = merge(dv, sv)
				continue
			}
			dst[k] = deepCopy(sv)
			continue
		}
		dst[k] = v
	}
	return dst
}

func deepCopy(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if vm, ok := v.(map[string]any); ok {
			out[k] = deepCopy(vm)
		} else {
			out[k] = v
		}
	}
	return out
}

// PairName is a stable, unique, DNS-1123 label (at most 63 characters) for a pair:
// "<workload>-<cluster>-<hash>", the hash covering both namespaces and names, the readable part cut to fit.
func PairName(workloadNamespace, workload, clusterNamespace, cluster string) string {
	return string(appendPairName(nil, workloadNamespace, workload, clusterNamespace, cluster))
}

// pairNameLen is len(PairName(...)) without hashing: the readable part as appendPairName cuts it, a
// dash, and eight hex digits.
func pairNameLen(workload, cluster string) int {
	n := len(workload) + 1 + len(cluster)
	if max := 63 - 8 - 1; n > max {
		n = max
		at := func(i int) byte {
			if i < len(workload) {
				return workload[i]
			}
			if i == len(workload) {
				return '-'
			}
			return cluster[i-len(workload)-1]
		}
		for n > 0 && (at(n-1) == '-' || at(n-1) == '.') {
			n--
		}
	}
	return n + 1 + 8
}

// appendPairName appends PairName's result without allocating (answers write 100,000 of them).
func appendPairName(dst []byte, workloadNamespace, workload, clusterNamespace, cluster string) []byte {
	var in [512]byte
	key := append(append(append(append(append(append(in[:0], workloadNamespace...), '/'), workload...), 0), clusterNamespace...), '/')
	sum := sha256.Sum256(append(key, cluster...))
	var hash [8]byte
	hex.Encode(hash[:], sum[:4])
	start := len(dst)
	dst = append(append(append(dst, workload...), '-'), cluster...)
	base := dst[start:]
	for i, b := range base {
		switch {
		case b >= 'A' && b <= 'Z':
			base[i] = b + ('a' - 'A')
		}
	}
	if max := 63 - len(hash) - 1; len(base) > max {
		dst = dst[:start+max]
		for len(dst) > start && (dst[len(dst)-1] == '-' || dst[len(dst)-1] == '.') {
			dst = dst[:len(dst)-1]
		}
	}
	for i := start; i < len(dst); i++ {
		if dst[i] == '.' {
			dst[i] = '-'
		}
	}
	return append(append(dst, '-'), hash[:]...)
}
