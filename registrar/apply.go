package registrar

import (
	"bytes"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// ownedFields are the label, annotation and data keys fleetbridge's field manager owns.
type ownedFields struct {
	labels, annotations, data map[string]bool
}

// ownFields reads the keys fleetbridge owns from managedFields: those of its server-side apply entry,
// and of its update entry, which the create that first wrote the Secret leaves (createdFields).
func ownFields(obj metav1.Object) ownedFields {
	return fieldsOf(obj, func(op metav1.ManagedFieldsOperationType) bool { return true })
}

// fieldsOf reads the label, annotation and data keys of fleetbridge's managedFields entries whose
// operation is wanted.
func fieldsOf(obj metav1.Object, wanted func(metav1.ManagedFieldsOperationType) bool) ownedFields {
	out := ownedFields{labels: map[string]bool{}, annotations: map[string]bool{}, data: map[string]bool{}}
	for _, entry := range obj.GetManagedFields() {
		if entry.Manager != owned.FieldManager || !wanted(entry.Operation) || entry.FieldsV1 == nil {
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

// createdFields says whether the managedFields entry of the create that first wrote a Secret
// (fleetbridge's update entry) owns a key that desired no longer has. Server-side apply removes only the
// fields no other entry owns, so such a key outlives an apply that drops it until the entry is folded
// into fleetbridge's apply entry (secretWriter.adoptCreated).
func createdFields(existing, desired *corev1.Secret) bool {
	f := fieldsOf(existing, func(op metav1.ManagedFieldsOperationType) bool { return op == metav1.ManagedFieldsOperationUpdate })
	return dropsAny(f.labels, desired.Labels) || dropsAny(f.annotations, desired.Annotations) || dropsAny(f.data, desired.Data)
}

// dropsAny says whether a key of owned is missing from want.
func dropsAny[V any](owned map[string]bool, want map[string]V) bool {
	for k := range owned {
		if _, ok := want[k]; !ok {
			return true
		}
	}
	return false
}

// mergeFieldSets is the union of two FieldsV1 trees.
func mergeFieldSets(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if am, ok := out[k].(map[string]any); ok {
			if bm, ok := v.(map[string]any); ok {
				out[k] = mergeFieldSets(am, bm)
				continue
			}
		}
		out[k] = v
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
	prev := ownFields(existing)
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
