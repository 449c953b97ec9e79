package fleet

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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

// Answer is the pairs a filter allows, resolved once, with the exact length of their encoding: a server
// knows an answer's size before it writes or allocates any of it. Its bytes equal encoding/json's for
// the same []Pair, but are assembled from fragments encoded once per cluster and per workload (and per
// set of matching overrides), so an answer costs copying, not marshalling.
type Answer struct {
	style Style
	pairs []answerPair
	size  int64
}

// answerPair is one resolved pair: everything but its name is a shared, already encoded fragment.
type answerPair struct {
	w    *Workload
	c    *Cluster
	tail []byte
}

// ErrIncomplete refuses an answer that holds a cluster whose Secret does not yet carry the facts the
// answer needs. Leaving the cluster out would make Argo CD delete its Applications; the registrar adds
// the facts with its next write.
var ErrIncomplete = errors.New("a registered cluster's Secret does not carry its server yet (the registrar adds it with its next write); retry shortly")

// answerPairs recycles the resolved pairs of answers: 100,000 of them are a few megabytes.
var answerPairs = sync.Pool{New: func() any { return new([]answerPair) }}

// Answer resolves the pairs a filter allows and measures their encoding. It fails only when a
// workload's values do not render. Release it after use.
func (s *Snapshot) Answer(f Filter, style Style) (*Answer, error) {
	buf := answerPairs.Get().(*[]answerPair)
	a := &Answer{style: style, pairs: (*buf)[:0]}
	a.size = int64(len(openArray) + len(closeArray))
	perPair := int64(len(openArgoPair) + len(clusterField) + len(workloadField) + len(closePair))
	if style == Flux {
		perPair += int64(len(openFluxPair) + len(fluxName) - len(openArgoPair))
	}
	err := s.forEachPair(f, func(w *Workload, c *Cluster) error {
		if c.Incomplete {
			return ErrIncomplete
		}
		tail, err := w.valuesFragment(c.Labels)
		if err != nil {
			return err
		}
		names := int64(pairNameLen(w.Name, c.Name))
		if style == Flux {
			names *= 2
		}
		if len(a.pairs) > 0 {
			a.size += int64(len(comma))
		}
		a.size += perPair + names + int64(len(c.fragment())+len(w.fragments().head)+len(tail))
		a.pairs = append(a.pairs, answerPair{w: w, c: c, tail: tail})
		return nil
	})
	if err != nil {
		a.Release()
		return nil, err
	}
	return a, nil
}

// Size is the answer's encoded length in bytes.
func (a *Answer) Size() int64 { return a.size }

// Len is the number of pairs.
func (a *Answer) Len() int { return len(a.pairs) }

// Digest is the SHA-256 of the answer's encoding, streamed: the refreshers compare answers without
// building them.
func (a *Answer) Digest() [sha256.Size]byte {
	h := sha256.New()
	bw := bufio.NewWriterSize(h, 32<<10)
	_, _ = a.WriteTo(bw) // a hash does not fail
	_ = bw.Flush()
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// WorkloadRun is one Workload's pairs in an answer: they are adjacent, Workloads in answer order.
type WorkloadRun struct {
	Workload types.NamespacedName
	Pairs    int
}

// WorkloadRuns lists the answer's Workloads in order with their number of pairs, so a client that keeps
// only a prefix of the answer (Flux Operator's spec.filter.limit) can be told whose pairs it drops.
func (a *Answer) WorkloadRuns() []WorkloadRun {
	var out []WorkloadRun
	for _, p := range a.pairs {
		key := types.NamespacedName{Namespace: p.w.Namespace, Name: p.w.Name}
		if n := len(out); n > 0 && out[n-1].Workload == key {
			out[n-1].Pairs++
			continue
		}
		out = append(out, WorkloadRun{Workload: key, Pairs: 1})
	}
	return out
}

// Release returns the answer's memory for reuse; the Answer must not be used after.
func (a *Answer) Release() {
	if a.pairs != nil {
		clear(a.pairs) // drop the references to snapshots
		pairs := a.pairs[:0]
		answerPairs.Put(&pairs)
		a.pairs = nil
	}
}

// WriteTo writes the answer's JSON array to w, fragment by fragment; w should buffer.
func (a *Answer) WriteTo(w io.Writer) (int64, error) {
	var written int64
	var err error
	write := func(b []byte) {
		if err == nil {
			var n int
			n, err = w.Write(b)
			written += int64(n)
		}
	}
	var name [64]byte
	write(openArray)
	for i, p := range a.pairs {
		if i > 0 {
			write(comma)
		}
		// Pair names are DNS labels ([a-z0-9-]): JSON strings as they are, no escaping needed.
		pairName := appendPairName(name[:0], p.w.Namespace, p.w.Name, p.c.Namespace, p.c.Name)
		if a.style == Flux {
			write(openFluxPair)
			write(pairName)
			write(fluxName)
		} else {
			write(openArgoPair)
		}
		write(pairName)
		write(clusterField)
		write(p.c.fragment())
		write(workloadField)
		write(p.w.fragments().head)
		write(p.tail)
		write(closePair)
	}
	write(closeArray)
	return written, err
}

// AppendPairs appends to dst the JSON array of every pair the filter allows, in Pairs' order, and
// returns the number of pairs.
func (s *Snapshot) AppendPairs(dst []byte, f Filter, style Style) ([]byte, int, error) {
	a, err := s.Answer(f, style)
	if err != nil {
		return nil, 0, err
	}
	defer a.Release()
	buf := bytes.NewBuffer(slices.Grow(dst, int(a.size)))
	_, _ = a.WriteTo(buf) // a bytes.Buffer does not fail
	return buf.Bytes(), a.Len(), nil
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

// CountPairs is the number of pairs the filter allows, without encoding them.
func (s *Snapshot) CountPairs(f Filter) int {
	n := 0
	_ = s.forEachPair(f, func(*Workload, *Cluster) error { n++; return nil })
	return n
}

// PairRef names one pair: its parameter `name` (what a template puts in the fleetbridge.io/pair label),
// its CAPI Cluster and the Registration that registered it.
type PairRef struct {
	Name         string
	Cluster      types.NamespacedName
	Registration string
}

// PairRefs lists the pairs the filter allows, in answer order.
func (s *Snapshot) PairRefs(f Filter) []PairRef {
	var out []PairRef
	_ = s.forEachPair(f, func(w *Workload, c *Cluster) error {
		out = append(out, PairRef{Name: PairName(w.Namespace, w.Name, c.Namespace, c.Name), Cluster: types.NamespacedName{Namespace: c.Namespace, Name: c.Name},
			Registration: c.Registration})
		return nil
	})
	return out
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
