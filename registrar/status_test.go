package registrar

import (
	"errors"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

func TestComputeStatus(t *testing.T) {
	k := func(i int) types.NamespacedName {
		return types.NamespacedName{Namespace: "ns", Name: fmt.Sprintf("c%02d", i)}
	}
	ok := clusterResult{Registered: true, Reason: fleetv1.ReasonRegistered}
	bad := clusterResult{Failing: true, Reason: fleetv1.ReasonClusterUnreachable}
	waiting := clusterResult{Reason: fleetv1.ReasonWaitingForControlPlane}
	many := map[types.NamespacedName]clusterResult{}
	var manyKeys []types.NamespacedName
	for i := 0; i < 30; i++ {
		many[k(i)] = bad
		manyKeys = append(manyKeys, k(i))
	}
	cases := []struct {
		name                         string
		in                           statusInput
		wantStatus                   metav1.ConditionStatus
		wantReason                   string
		selected, registered, failed int32
		failures                     int
		complete                     bool
	}{
		{"nothing selected", statusInput{}, metav1.ConditionTrue, fleetv1.ReasonNoClustersSelected, 0, 0, 0, 0, true},
		{"all registered", statusInput{selected: []types.NamespacedName{k(1), k(2)}, results: map[types.NamespacedName]clusterResult{k(1): ok, k(2): ok}},
			metav1.ConditionTrue, fleetv1.ReasonRegistered, 2, 2, 0, 0, true},
		{"one failing", statusInput{selected: []types.NamespacedName{k(1), k(2)}, results: map[types.NamespacedName]clusterResult{k(1): ok, k(2): bad}},
			metav1.ConditionFalse, fleetv1.ReasonPartiallyRegistered, 2, 1, 1, 1, true},
		{"waiting for a control plane", statusInput{selected: []types.NamespacedName{k(1), k(2)}, results: map[types.NamespacedName]clusterResult{k(1): ok, k(2): waiting}},
			metav1.ConditionUnknown, fleetv1.ReasonProgressing, 2, 1, 0, 0, true},
		{"a selected cluster has not reported", statusInput{selected: []types.NamespacedName{k(1), k(2)}, results: map[types.NamespacedName]clusterResult{k(1): ok}},
			metav1.ConditionUnknown, fleetv1.ReasonProgressing, 2, 1, 0, 0, false},
		{"failure list is bounded", statusInput{selected: manyKeys, results: many},
			metav1.ConditionFalse, fleetv1.ReasonPartiallyRegistered, 30, 0, 30, fleetv1.MaxReportedFailures, true},
		{"invalid spec", statusInput{specError: errors.New("spec.argocd.nameTemplate does not parse")},
			metav1.ConditionFalse, fleetv1.ReasonInvalidSpec, 0, 0, 0, 0, true},
		{"suspended", statusInput{suspended: true, selected: []types.NamespacedName{k(1)}},
			metav1.ConditionUnknown, fleetv1.ReasonSuspended, 1, 0, 0, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.generation = 7
			got, complete := computeStatus(fleetv1.RegistrationStatus{}, tc.in)
			cond := meta.FindStatusCondition(got.Conditions, fleetv1.ReadyCondition)
			if cond == nil || cond.Status != tc.wantStatus || cond.Reason != tc.wantReason || cond.ObservedGeneration != 7 {
				t.Fatalf("Ready = %+v", cond)
			}
			if got.Selected != tc.selected || got.Registered != tc.registered || got.Failing != tc.failed || len(got.Failures) != tc.failures {
				t.Fatalf("counts %d/%d/%d failures %d", got.Selected, got.Registered, got.Failing, len(got.Failures))
			}
			if complete != tc.complete || got.ObservedGeneration != 7 {
				t.Fatalf("complete = %v, observedGeneration = %d", complete, got.ObservedGeneration)
			}
		})
	}
	// Failures are sorted, so the bounded list is stable across reconciles.
	got, _ := computeStatus(fleetv1.RegistrationStatus{}, statusInput{selected: manyKeys, results: many})
	if got.Failures[0].Name != "c00" || got.Failures[19].Name != "c19" {
		t.Fatalf("failures not sorted: first %s last %s", got.Failures[0].Name, got.Failures[19].Name)
	}
	// An unchanged status keeps its lastTransitionTime (no needless status write).
	again, _ := computeStatus(got, statusInput{selected: manyKeys, results: many})
	if !meta.FindStatusCondition(again.Conditions, "Ready").LastTransitionTime.Equal(&meta.FindStatusCondition(got.Conditions, "Ready").LastTransitionTime) {
		t.Fatal("lastTransitionTime moved on an unchanged status")
	}
}

// Only the changes a user acts on get an Event: failures, recoveries, and registrations with a caveat.
func TestNotable(t *testing.T) {
	registered := clusterResult{Registered: true, Reason: fleetv1.ReasonRegistered}
	failing := clusterResult{Failing: true, Reason: fleetv1.ReasonClusterUnreachable}
	waiting := clusterResult{Reason: fleetv1.ReasonWaitingForControlPlane}
	insecure := registered
	insecure.Insecure = true
	for _, tc := range []struct {
		name      string
		prev, res clusterResult
		want      bool
	}{
		{"first registration", clusterResult{}, registered, false},
		{"waiting for a control plane", clusterResult{}, waiting, false},
		{"registered once waiting ended", waiting, registered, false},
		{"a failure", registered, failing, true},
		{"a first failure", clusterResult{}, failing, true},
		{"the recovery", failing, registered, true},
		{"registered with TLS verification off", clusterResult{}, insecure, true},
	} {
		if got := notable(tc.prev, tc.res); got != tc.want {
			t.Errorf("%s: notable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
