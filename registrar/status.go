package registrar

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

// statusInput is everything a Registration's status is computed from.
type statusInput struct {
	generation int64
	suspended  bool
	specError  error
	selected   []types.NamespacedName
	results    map[types.NamespacedName]clusterResult
	// outranks are the Registrations that lost a conflict to this one, sorted.
	outranks []string
}

// computeStatus summarises per-cluster results into counts, a bounded failure list and the Ready
// condition. It returns complete=false while a selected Cluster has no result yet (just after a start),
// so the controller does not publish counts that would only flap.
func computeStatus(prev fleetv1.RegistrationStatus, in statusInput) (fleetv1.RegistrationStatus, bool) {
	out := fleetv1.RegistrationStatus{ObservedGeneration: in.generation}
	out.Conditions = append(out.Conditions, prev.Conditions...)
	complete := true
	var failures []fleetv1.ClusterFailure
	waiting := 0
	for _, key := range in.selected {
		res, ok := in.results[key]
		if !ok {
			complete = false
			continue
		}
		switch {
		case res.Registered:
			out.Registered++
			if res.Insecure {
				out.Insecure++
			}
			if res.Unverified {
				out.Unverified++
			}
		case res.Failing:
			out.Failing++
			failures = append(failures, fleetv1.ClusterFailure{Namespace: key.Namespace, Name: key.Name, Reason: res.Reason, Message: res.Message})
		default:
			waiting++
		}
	}
	out.Selected = int32(len(in.selected))
	sort.Slice(failures, func(i, j int) bool {
		if failures[i].Namespace != failures[j].Namespace {
			return failures[i].Namespace < failures[j].Namespace
		}
		return failures[i].Name < failures[j].Name
	})
	if len(failures) > fleetv1.MaxReportedFailures {
		failures = failures[:fleetv1.MaxReportedFailures]
	}
	out.Failures = failures

	cond := metav1.Condition{Type: fleetv1.ReadyCondition, ObservedGeneration: in.generation}
	switch {
	case in.specError != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, fleetv1.ReasonInvalidSpec, in.specError.Error()
		complete = true
	case in.suspended:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionUnknown, fleetv1.ReasonSuspended, "reconciliation is suspended; existing secrets are kept"
		complete = true
	case len(in.selected) == 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, fleetv1.ReasonNoClustersSelected, "no Cluster matches the selectors"
	case out.Failing > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, fleetv1.ReasonPartiallyRegistered
		cond.Message = fmt.Sprintf("%d of %d selected clusters failing; first: %s/%s: %s", out.Failing, out.Selected,
			failures[0].Namespace, failures[0].Name, failures[0].Reason)
	case waiting > 0 || !complete:
		cond.Status, cond.Reason = metav1.ConditionUnknown, fleetv1.ReasonProgressing
		cond.Message = fmt.Sprintf("%d of %d selected clusters registered; the rest wait for their control plane", out.Registered, out.Selected)
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, fleetv1.ReasonRegistered
		cond.Message = fmt.Sprintf("%d clusters registered", out.Registered)
	}
	if len(in.outranks) > 0 {
		out.Conflicts = in.outranks
		if len(out.Conflicts) > fleetv1.MaxReportedFailures {
			out.Conflicts = out.Conflicts[:fleetv1.MaxReportedFailures]
		}
	}
	cond.Message += qualifiers(out)
	meta.SetStatusCondition(&out.Conditions, cond)
	return out, complete
}

// qualifiers is what the Ready message adds about clusters registered with less than full assurance and
// about Registrations this one outranks.
func qualifiers(s fleetv1.RegistrationStatus) string {
	var out string
	if s.Insecure > 0 {
		out += fmt.Sprintf("; %d without TLS verification (spec.credentials.allowInsecure)", s.Insecure)
	}
	if s.Unverified > 0 {
		out += fmt.Sprintf("; %d with an exec credential the controller could not verify", s.Unverified)
	}
	if len(s.Conflicts) > 0 {
		out += fmt.Sprintf("; it keeps clusters that Registration %s also selects (they report Conflict)", strings.Join(s.Conflicts, ", "))
	}
	return out
}
