package fleet

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestMergedValues(t *testing.T) {
	sel := func(s string) labels.Selector { out, _ := labels.Parse(s); return out }
	w := Workload{
		Values: map[string]any{"a": 1.0, "list": []any{"x", "y"}, "nested": map[string]any{"keep": true, "change": "old"}},
		Overrides: []Override{
			{Selector: sel("region=eu"), Values: map[string]any{"nested": map[string]any{"change": "eu"}, "list": []any{"z"}}},
			{Selector: sel("env=prod"), Values: map[string]any{"nested": map[string]any{"change": "prod"}, "a": map[string]any{"now": "object"}}},
			{Selector: sel("never=true"), Values: map[string]any{"a": "never"}},
		},
	}
	cases := []struct {
		labels map[string]string
		want   string
	}{
		{nil, `{"a":1,"list":["x","y"],"nested":{"change":"old","keep":true}}`},
		{map[string]string{"region": "eu"}, `{"a":1,"list":["z"],"nested":{"change":"eu","keep":true}}`},
		// Later overrides win; an object replaces a scalar; lists replace, never append.
		{map[string]string{"region": "eu", "env": "prod"}, `{"a":{"now":"object"},"list":["z"],"nested":{"change":"prod","keep":true}}`},
	}
	for _, tc := range cases {
		got, _ := json.Marshal(MergedValues(w, tc.labels))
		if string(got) != tc.want {
			t.Errorf("labels %v: got %s, want %s", tc.labels, got, tc.want)
		}
	}
	if w.Values["nested"].(map[string]any)["change"] != "old" {
		t.Fatal("merging mutated the workload's values")
	}
	if got, _ := json.Marshal(MergedValues(Workload{}, nil)); string(got) != "{}" {
		t.Fatalf("no values: %s", got)
	}
}

func TestPairName(t *testing.T) {
	long := strings.Repeat("w", 60)
	names := map[string]bool{}
	for _, in := range [][4]string{
		{"apps", "web", "fleet", "c1"},
		{"other", "web", "fleet", "c1"},  // same names, other workload namespace
		{"apps", "web", "fleet-2", "c1"}, // same names, other cluster namespace
		{"apps", long, "fleet", long},
		{"apps", "Web.App", "fleet", "c1"},
	} {
		name := PairName(in[0], in[1], in[2], in[3])
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			t.Errorf("%v: %q is not a DNS label: %v", in, name, errs)
		}
		if names[name] {
			t.Errorf("%v: %q collides", in, name)
		}
		names[name] = true
		if PairName(in[0], in[1], in[2], in[3]) != name {
			t.Errorf("%v: name is not stable", in)
		}
	}
}

func TestPairsDeduplicateClustersRegisteredTwice(t *testing.T) {
	c := Cluster{Namespace: "fleet", Name: "c1", Ready: true, Labels: map[string]string{"env": "prod"}}
	a, b := c, c
	a.Registration, b.Registration = "a", "b"
	w := Workload{Name: "web", Namespace: "apps", ClusterSelector: labels.Everything()}
	pairs, err := Pairs([]Cluster{b, a}, []Workload{w}, Filter{})
	if err != nil || len(pairs) != 1 || pairs[0].Cluster.Registration != "a" {
		t.Fatalf("pairs %+v, %v", pairs, err)
	}
	w.Registration = "b"
	pairs, _ = Pairs([]Cluster{a, b}, []Workload{w}, Filter{})
	if len(pairs) != 1 || pairs[0].Cluster.Registration != "b" {
		t.Fatalf("a workload naming a registration got %+v", pairs)
	}
}

// An outage must not shrink an answer: a registered cluster whose probe fails stays, with ready false,
// unless the request asks for ready clusters only.
func TestUnreadyClustersStayUnlessReadyOnly(t *testing.T) {
	up := Cluster{Namespace: "fleet", Name: "up", Ready: true, Labels: map[string]string{"env": "prod"}}
	down := Cluster{Namespace: "fleet", Name: "down", Labels: map[string]string{"env": "prod"}}
	w := Workload{Name: "web", Namespace: "apps", ClusterSelector: labels.Everything()}
	pairs, err := Pairs([]Cluster{up, down}, []Workload{w}, Filter{})
	if err != nil || len(pairs) != 2 || pairs[0].Cluster.Name != "down" || pairs[0].Cluster.Ready {
		t.Fatalf("pairs %+v, %v", pairs, err)
	}
	pairs, _ = Pairs([]Cluster{up, down}, []Workload{w}, Filter{ReadyOnly: true})
	if len(pairs) != 1 || pairs[0].Cluster.Name != "up" {
		t.Fatalf("readyOnly kept %+v", pairs)
	}
}
