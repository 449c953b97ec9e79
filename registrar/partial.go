package registrar

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// metav1PartialSecret is a Secret seen as metadata only, as the CAPI kubeconfig Secret cache holds it:
// the controller never keeps CAPI credentials in an informer.
type metav1PartialSecret struct{ m *metav1.PartialObjectMetadata }

func (p *metav1PartialSecret) obj() *metav1.PartialObjectMetadata {
	if p.m == nil {
		p.m = newPartialSecret()
	}
	return p.m
}

func newPartialSecret() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.APIVersion, m.Kind = "v1", "Secret"
	return m
}
