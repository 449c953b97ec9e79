package registrar

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// newPartialSecret is a Secret to be read as metadata only (ownership checks need no data).
func newPartialSecret() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.APIVersion, m.Kind = "v1", "Secret"
	return m
}
