package plugin

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

// InputsTrimmed follows what the Flux refresher found: set while a provider drops the Workload's pairs,
// removed once none does, kept as it is until the refresher has looked; and its message names only a
// provider in the Workload's own namespace.
func TestWorkloadStatusInputsTrimmed(t *testing.T) {
	trimmed := metav1.Condition{Type: fleetv1.InputsTrimmedCondition, Status: metav1.ConditionTrue, Reason: fleetv1.ReasonInputLimitExceeded, Message: "earlier"}
	provider := func(ns, name string, kept, total, dropped int) inputTrim {
		return inputTrim{Provider: types.NamespacedName{Namespace: ns, Name: name}, Kept: kept, Total: total, Dropped: dropped}
	}
	cases := []struct {
		name     string
		existing []metav1.Condition
		trims    []inputTrim
		known    bool
		want     string   // the condition's message; "" means no InputsTrimmed condition
		wantNot  []string // must not appear in the message
		keepSame bool     // the existing condition stays as it was
	}{
		{name: "none", known: true},
		{name: "cleared once no provider drops pairs", existing: []metav1.Condition{trimmed}, known: true},
		{name: "kept until the refresher has looked", existing: []metav1.Condition{trimmed}, known: false, keepSame: true, want: "earlier"},
		{
			name: "a provider in the Workload's namespace is named", known: true,
			trims: []inputTrim{provider("apps", "fleetbridge", 100, 130, 30)},
			want:  "Flux ResourceSetInputProvider fleetbridge in this namespace keeps 100 of 130 inputs (spec.filter.limit) and drops 30 of this Workload's pairs",
		},
		{
			name: "a provider elsewhere is only counted", known: true,
			trims:   []inputTrim{provider("team-b", "secret-name", 10, 25, 4)},
			want:    "a Flux ResourceSetInputProvider in another namespace keeps 10 of 25 inputs (spec.filter.limit) and drops 4 of this Workload's pairs",
			wantNot: []string{"team-b", "secret-name"},
		},
		{
			name: "own first, bounded", known: true,
			trims: []inputTrim{
				provider("b", "p1", 1, 9, 1), provider("c", "p2", 2, 9, 1), provider("apps", "mine", 3, 9, 1),
				provider("d", "p3", 4, 9, 1), provider("e", "p4", 5, 9, 1),
			},
			want: "Flux ResourceSetInputProvider mine in this namespace keeps 3 of 9 inputs (spec.filter.limit) and drops 1 of this Workload's pairs; " +
				"a Flux ResourceSetInputProvider in another namespace keeps 1 of 9 inputs (spec.filter.limit) and drops 1 of this Workload's pairs; " +
				"a Flux ResourceSetInputProvider in another namespace keeps 2 of 9 inputs (spec.filter.limit) and drops 1 of this Workload's pairs; and 2 more",
			wantNot: []string{"p1", "p2", "p3", "p4"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := &fleetv1.Workload{
				ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web", Generation: 3},
				Spec: fleetv1.WorkloadSpec{
					ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
					Source:          fleetv1.WorkloadSource{RepoURL: "https://git/web", Path: "deploy", TargetRevision: "main"},
					Destination:     fleetv1.WorkloadDestination{Namespace: "web"},
				},
				Status: fleetv1.WorkloadStatus{Conditions: tc.existing},
			}
			status := workloadStatus(w, testFleet(), tc.trims, tc.known)
			if ready := meta.FindStatusCondition(status.Conditions, fleetv1.ReadyCondition); ready == nil || ready.Reason != fleetv1.ReasonMatched {
				t.Fatalf("Ready is %+v; InputsTrimmed must not change it", ready)
			}
			got := meta.FindStatusCondition(status.Conditions, fleetv1.InputsTrimmedCondition)
			switch {
			case tc.want == "" && got != nil:
				t.Fatalf("InputsTrimmed %+v, want none", got)
			case tc.want == "":
				return
			case got == nil:
				t.Fatalf("no InputsTrimmed condition, want %q", tc.want)
			}
			if got.Message != tc.want || got.Status != metav1.ConditionTrue || got.Reason != fleetv1.ReasonInputLimitExceeded {
				t.Fatalf("InputsTrimmed %+v\nwant message %q", got, tc.want)
			}
			if !tc.keepSame && got.ObservedGeneration != w.Generation {
				t.Fatalf("observedGeneration %d, want %d", got.ObservedGeneration, w.Generation)
			}
			for _, s := range tc.wantNot {
				if strings.Contains(got.Message, s) {
					t.Fatalf("message %q names %q, which the Workload's readers may not read", got.Message, s)
				}
			}
		})
	}
}
