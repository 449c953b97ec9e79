package fleet

import (
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

// An edit that breaks a Workload must not shrink answers: its last valid version stays, and the
// snapshot says it is invalid. A Workload that was never valid is in no answer. (The last valid version
// lives in memory only: a process that starts on a broken Workload serves none of it.)
func TestInvalidEditKeepsTheLastValidWorkload(t *testing.T) {
	store := NewStore()
	w := &fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web", ResourceVersion: "1"},
		Spec: fleetv1.WorkloadSpec{
			ClusterSelector: &metav1.LabelSelector{},
			Source:          fleetv1.WorkloadSource{RepoURL: "https://git/web", Path: "deploy", TargetRevision: "v1"},
			Destination:     fleetv1.WorkloadDestination{Namespace: "web"},
		},
	}
	store.Add(w)
	store.Snapshot() // an answer was served from the valid version
	broken := w.DeepCopy()
	broken.ResourceVersion, broken.Spec.Source.TargetRevision = "2", "v2"
	broken.Spec.Overrides = []fleetv1.WorkloadOverride{{
		ClusterSelector: metav1.LabelSelector{MatchLabels: map[string]string{"bad key": "x"}},
		Values:          &apiextensionsv1.JSON{Raw: []byte(`{"a":1}`)},
	}}
	store.Add(broken)
	snap := store.Snapshot()
	key := types.NamespacedName{Namespace: "apps", Name: "web"}
	if len(snap.Workloads) != 1 || snap.Workloads[0].TargetRevision != "v1" || snap.Invalid[key] == nil {
		t.Fatalf("workloads %+v, invalid %v", snap.Workloads, snap.Invalid)
	}
	fixed := w.DeepCopy()
	fixed.ResourceVersion, fixed.Spec.Source.TargetRevision = "3", "v3"
	store.Add(fixed)
	if snap = store.Snapshot(); len(snap.Workloads) != 1 || snap.Workloads[0].TargetRevision != "v3" || snap.Invalid[key] != nil {
		t.Fatalf("after the fix: workloads %+v, invalid %v", snap.Workloads, snap.Invalid)
	}
	never := broken.DeepCopy()
	never.Name, never.ResourceVersion = "never", "4"
	store.Add(never)
	if snap = store.Snapshot(); len(snap.Workloads) != 1 || snap.Invalid[types.NamespacedName{Namespace: "apps", Name: "never"}] == nil {
		t.Fatalf("a never valid Workload: workloads %+v, invalid %v", snap.Workloads, snap.Invalid)
	}
}
