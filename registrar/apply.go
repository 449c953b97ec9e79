package registrar

import (
	"bytes"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// ownedFields are the label, annotation and data keys fleetbridge's field manager last applied.
type ownedFields struct {
	labels, annotations, data map[string]bool
}

// appliedFields reads fleetbridge's server-side apply entry from managedFields.
func appliedFields(obj metav1.Object) ownedFields {
	out := ownedFields{labels: map[string]bool{}, annotations: map[string]bool{}, data: map[string]bool{}}
	for _, entry := range obj.GetManagedFields() {
		if entry.Manager != owned.FieldManager || entry.Operation != metav1.ManagedFieldsOperationApply || entry.FieldsV1 == nil {
			continue
		}
		var fields map[string]map[string]any
		if err := json.Unmarshal(entry.FieldsV1.Raw, &fields); err != nil {
			continue
		}
		collect := func(set map[string]bool, m any) {
			if keys, ok := m.(map[string]any); ok {
				for k := range keys {
					if len(k) > 2 && k[:2] == "f:" {
						set[k[2:]] = true
					}
				}
			}
		}
		collect(out.data, fields["f:data"])
		if md := fields["f:metadata"]; md != nil {
			collect(out.labels, md["f:labels"])
			collect(out.annotations, md["f:annotations"])
		}
	}
	return out
}

// secretUpToDate says whether existing already holds everything desired, and nothing fleetbridge applied
// before and no longer wants. Fields other writers own (Argo CD's auto-labels, for instance) are ignored,
// so tolerating them costs no write.
func secretUpToDate(existing, desired *corev1.Secret) bool {
	if existing == nil {
		return false
	}
	if existing.Type != desired.Type && !(existing.Type == "" && desired.Type == corev1.SecretTypeOpaque) {
		return false
	}
	if !containsStrings(existing.Labels, desired.Labels) || !containsStrings(existing.Annotations, desired.Annotations) {
		return false
	}
	for k, v := range desired.Data {
		if got, ok := existing.Data[k]; !ok || !bytes.Equal(got, v) {
			return false
		}
	}
	prev := appliedFields(existing)
	for k := range prev.labels {
		if _, ok := desired.Labels[k]; !ok {
			if _, still := existing.Labels[k]; still {
				return false
			}
		}
	}
	for k := range prev.annotations {
		if _, ok := desired.Annotations[k]; !ok {
			if _, still := existing.Annotations[k]; still {
				return false
			}
		}
	}
	for k := range prev.data {
		if _, ok := desired.Data[k]; !ok {
			if _, still := existing.Data[k]; still {
				return false
			}
		}
	}
	return true
}

func containsStrings(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// mustNotExist is the resourceVersion precondition of a first write: server-side apply checks a
// resourceVersion in the request against the live object, and creates the object (clearing it) when there
// is none. No object carries "1" (etcd's first write is revision 2), so the apply creates the Secret or
// fails with a Conflict: a hand-made Secret of the same name is never taken over, without a read first.
const mustNotExist = "1"
