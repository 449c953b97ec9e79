package fleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// Style is the shape of one encoded pair.
type Style int

const (
	// ArgoCD encodes {"name","cluster","workload"}: one plugin generator parameter set.
	ArgoCD Style = iota
	// Flux encodes {"id","name","cluster","workload"}: one ExternalService input.
	Flux
)

// AppendPairs appends to dst the JSON array of every pair the filter allows, in Pairs' order, and
// returns the number of pairs. The bytes equal encoding/json's for the same []Pair, but are assembled
// from fragments encoded once per cluster and per workload (and per set of matching overrides), so an
// answer costs copying, not marshalling: a 100,000-pair answer is a few tens of milliseconds.
func (s *Snapshot) AppendPairs(dst []byte, f Filter, style Style) ([]byte, int, error) {
	out := &appendSink{buf: dst}
	n, err := s.encode(f, style, out)
	if err != nil {
		return nil, 0, err
	}
	return out.buf, n, nil
}

// MeasurePairs is the length in bytes of what AppendPairs would append, and the number of pairs. It
// encodes each workload's values once (they are cached for the answer that follows) but copies nothing,
// so a server can refuse an answer that is too large before it allocates it.
func (s *Snapshot) MeasurePairs(f Filter, style Style) (int64, int, error) {
	out := &measureSink{}
	n, err := s.encode(f, style, out)
	return out.n, n, err
}

// WritePairs writes what AppendPairs would append to w, fragment by fragment, without building it. It
// fails only when w does, or when a workload's values do not render; MeasurePairs fails on the latter
// first.
func (s *Snapshot) WritePairs(w io.Writer, f Filter, style Style) (int, error) {
	out := &writerSink{w: w}
	n, err := s.encode(f, style, out)
	if err == nil {
		err = out.err
	}
	return n, err
}

// sink receives an answer's fragments in order.
type sink interface {
	write(b []byte)
	// pairName receives a pair's name; a measuring sink needs only its length.
	pairName(workloadNamespace, workload, clusterNamespace, cluster string)
}

type appendSink struct{ buf []byte }

func (a *appendSink) write(b []byte) { a.buf = append(a.buf, b...) }
func (a *appendSink) pairName(wns, w, cns, c string) {
	a.buf = appendPairName(a.buf, wns, w, cns, c)
}

type measureSink struct{ n int64 }

func (m *measureSink) write(b []byte)             { m.n += int64(len(b)) }
func (m *measureSink) pairName(_, w, _, c string) { m.n += int64(pairNameLen(w, c)) }

type writerSink struct {
	w       io.Writer
	err     error
	scratch [64]byte
}

func (ws *writerSink) write(b []byte) {
	if ws.err == nil {
		_, ws.err = ws.w.Write(b)
	}
}
func (ws *writerSink) pairName(wns, w, cns, c string) {
	ws.write(appendPairName(ws.scratch[:0], wns, w, cns, c))
}

// The fixed parts of an encoded pair.
var (
	openArray, closeArray, comma = []byte("["), []byte("]"), []byte(",")
	openFluxPair                 = []byte(`{"id":"`)
	fluxName                     = []byte(`","name":"`)
	openArgoPair                 = []byte(`{"name":"`)
	clusterField                 = []byte(`","cluster":`)
	workloadField                = []byte(`,"workload":`)
	closePair                    = []byte("}")
)

// encode sends every allowed pair's fragments to out and returns the number of pairs.
func (s *Snapshot) encode(f Filter, style Style, out sink) (int, error) {
	out.write(openArray)
	n := 0
	err := s.forEachPair(f, func(w *Workload, c *Cluster) error {
		tail, err := w.valuesFragment(c.Labels)
		if err != nil {
			return err
		}
		if n > 0 {
			out.write(comma)
		}
		// Pair names are DNS labels ([a-z0-9-]): JSON strings as they are, no escaping needed.
		if style == Flux {
			out.write(openFluxPair)
			out.pairName(w.Namespace, w.Name, c.Namespace, c.Name)
			out.write(fluxName)
		} else {
			out.write(openArgoPair)
		}
		out.pairName(w.Namespace, w.Name, c.Namespace, c.Name)
		out.write(clusterField)
		out.write(c.fragment())
		out.write(workloadField)
		out.write(w.fragments().head)
		out.write(tail)
		out.write(closePair)
		n++
		return nil
	})
	if err != nil {
		return 0, err
	}
	out.write(closeArray)
	return n, nil
}

// CountPairs is the number of pairs the filter allows, without encoding them.
func (s *Snapshot) CountPairs(f Filter) int {
	n := 0
	_ = s.forEachPair(f, func(*Workload, *Cluster) error { n++; return nil })
	return n
}

// forEachPair calls fn for every allowed pair in order: workloads by namespace and name, then clusters
// by namespace, name and Registration (the snapshot keeps both sorted).
func (s *Snapshot) forEachPair(f Filter, fn func(*Workload, *Cluster) error) error {
	cs := make([]*Cluster, 0, len(s.Clusters))
	for i := range s.Clusters {
		if c := &s.Clusters[i]; f.AllowsCluster(c) {
			cs = append(cs, c)
		}
	}
	// The Store's snapshots are sorted; one built by hand may not be.
	clusterOrder := func(i, j int) bool { return clusterLess(*cs[i], *cs[j]) }
	if !sort.SliceIsSorted(cs, clusterOrder) {
		sort.SliceStable(cs, clusterOrder)
	}
	ws := make([]*Workload, 0, len(s.Workloads))
	for i := range s.Workloads {
		if w := &s.Workloads[i]; f.AllowsWorkload(w) {
			ws = append(ws, w)
		}
	}
	workloadOrder := func(i, j int) bool {
		if ws[i].Namespace != ws[j].Namespace {
			return ws[i].Namespace < ws[j].Namespace
		}
		return ws[i].Name < ws[j].Name
	}
	if !sort.SliceIsSorted(ws, workloadOrder) {
		sort.SliceStable(ws, workloadOrder)
	}
	for _, w := range ws {
		// A cluster registered by two Registrations pairs once per workload (the first Registration by
		// name, unless the workload names one). Entries of one cluster are adjacent in the sorted list.
		var last *Cluster
		for _, c := range cs {
			if !Matches(*w, *c) || (last != nil && last.Namespace == c.Namespace && last.Name == c.Name) {
				continue
			}
			last = c
			if err := fn(w, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// fragment is the cluster's JSON object: encoded once when the Store converted it, or now for a
// Cluster built by hand.
func (c *Cluster) fragment() []byte {
	if c.json != nil {
		return c.json
	}
	b, _ := json.Marshal(c) // strings, bools and a string map cannot fail
	return b
}

// withFragment returns c with its JSON object encoded, for snapshots shared by concurrent requests.
func (c Cluster) withFragment() Cluster {
	c.json = nil
	c.json = c.fragment()
	return c
}

// workloadFragments are a workload's encoded parts: the fixed fields, then one values tail per set of
// overrides that match a cluster (most fleets have a handful of such sets, whatever their size).
type workloadFragments struct {
	head []byte // {"name":..., "destinationNamespace":... without the closing brace
	mu   sync.Mutex
	tail map[uint64][]byte // matched overrides (bit i: override i) -> ,"values":{...},"valuesYAML":"..."}
}

// fragments are the workload's shared fragments, made when the Store converted it, or new ones (not
// kept) for a Workload built by hand.
func (w *Workload) fragments() *workloadFragments {
	if w.frags != nil {
		return w.frags
	}
	return newWorkloadFragments(w)
}

func newWorkloadFragments(w *Workload) *workloadFragments {
	// WorkloadParams' encoding up to its values, which differ per cluster and are appended per pair.
	enc, _ := json.Marshal(WorkloadParams{Name: w.Name, Namespace: w.Namespace, RepoURL: w.RepoURL, Path: w.Path,
		Chart: w.Chart, TargetRevision: w.TargetRevision, DestinationNamespace: w.DestinationNamespace})
	head := bytes.TrimSuffix(enc, []byte(`,"values":null,"valuesYAML":""}`))
	return &workloadFragments{head: head, tail: map[uint64][]byte{}}
}

// valuesFragment is the values part of the workload's object for a cluster with these labels.
func (w *Workload) valuesFragment(clusterLabels map[string]string) ([]byte, error) {
	var key uint64
	for i, o := range w.Overrides {
		if o.Selector != nil && o.Selector.Matches(labels.Set(clusterLabels)) && i < 64 {
			key |= 1 << i
		}
	}
	cacheable := len(w.Overrides) <= 64 // the API caps overrides well below; keep it correct anyway
	frags := w.fragments()
	frags.mu.Lock()
	defer frags.mu.Unlock()
	if tail, ok := frags.tail[key]; ok && cacheable {
		return tail, nil
	}
	values := MergedValues(*w, clusterLabels)
	valuesYAML, err := yaml.Marshal(values)
	if err != nil {
		return nil, fmt.Errorf("workload %s/%s: values do not render as YAML: %w", w.Namespace, w.Name, err)
	}
	valuesJSON, err := json.Marshal(values)
	if err != nil {
		return nil, fmt.Errorf("workload %s/%s: values do not render as JSON: %w", w.Namespace, w.Name, err)
	}
	tail := append([]byte(`,"values":`), valuesJSON...)
	tail = append(tail, `,"valuesYAML":`...)
	tail = appendJSONString(tail, string(valuesYAML))
	tail = append(tail, '}')
	if cacheable {
		frags.tail[key] = tail
	}
	return tail, nil
}

// appendJSONString appends s as a JSON string, exactly as encoding/json writes it.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b >= 0x7f || b == '"' || b == '\\' || b == '<' || b == '>' || b == '&' {
			enc, _ := json.Marshal(s)
			return append(dst, enc...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
