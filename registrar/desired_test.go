package registrar

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	"github.com/fleetbridge/fleetbridge/internal/owned"
)

func TestPropagatedLabels(t *testing.T) {
	clusterLabels := map[string]string{
		"env": "prod", "region": "eu", "team/owner": "a", "team/cost": "b", "teams": "c",
		"fleetbridge.io/registration": "spoof", "argocd.argoproj.io/secret-type": "repository",
	}
	cases := []struct {
		patterns []string
		want     []string
	}{
		{nil, nil},
		{[]string{"env"}, []string{"env"}},
		{[]string{"team/*"}, []string{"team/cost", "team/owner"}},
		{[]string{"*"}, []string{"env", "region", "team/cost", "team/owner", "teams"}},
		{[]string{"env", "region", "missing"}, []string{"env", "region"}},
		{[]string{"fleetbridge.io/*", "argocd.argoproj.io/secret-type"}, nil},
	}
	for _, tc := range cases {
		got := propagatedLabels(tc.patterns, clusterLabels)
		if len(got) != len(tc.want) {
			t.Fatalf("%v: got %v, want keys %v", tc.patterns, got, tc.want)
		}
		for _, k := range tc.want {
			if got[k] != clusterLabels[k] {
				t.Fatalf("%v: missing %s in %v", tc.patterns, k, got)
			}
		}
	}
}

func TestArgoSecretNamesDoNotCollide(t *testing.T) {
	a := argoSecretName(types.NamespacedName{Namespace: "a-b", Name: "c"})
	b := argoSecretName(types.NamespacedName{Namespace: "a", Name: "b-c"})
	if a == b {
		t.Fatalf("%s collides", a)
	}
	long := argoSecretName(types.NamespacedName{Namespace: "n123456789012345678901234567890123456789012345678901234567890ab", Name: "c123456789012345678901234567890123456789012345678901234567890ab"})
	if len(long) > 253 {
		t.Fatalf("name too long: %d", len(long))
	}
}

func TestRenderTemplate(t *testing.T) {
	c := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c1", Labels: map[string]string{"region": "eu"}}}
	cases := []struct{ tmpl, want, err string }{
		{"{{ .Namespace }}-{{ .Name }}", "ns-c1", ""},
		{"{{ .Labels.region }}/{{ .Name }}", "eu/c1", ""},
		{"{{ .Nope }}", "", "does not render"},
		{"{{ .Name", "", "does not parse"},
		{"  ", "", "empty"},
	}
	for _, tc := range cases {
		got, err := renderTemplate("f", tc.tmpl, c)
		if tc.err != "" {
			if err == nil || !contains(err.Error(), tc.err) {
				t.Fatalf("%q: err = %v, want %q", tc.tmpl, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Fatalf("%q: got %q, %v", tc.tmpl, got, err)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestSecretUpToDate(t *testing.T) {
	desired := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"env": "prod", owned.LabelRegistration: "r"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"server": []byte("https://x"), "config": []byte("{}")},
	}
	applied := []metav1.ManagedFieldsEntry{{Manager: owned.FieldManager, Operation: metav1.ManagedFieldsOperationApply,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:data":{"f:server":{},"f:config":{},"f:project":{}},"f:metadata":{"f:labels":{"f:env":{},"f:region":{},"f:fleetbridge.io/registration":{}}},"f:type":{}}`)}}}
	with := func(mutate func(s *corev1.Secret)) *corev1.Secret {
		s := desired.DeepCopy()
		s.ManagedFields = applied
		mutate(s)
		return s
	}
	cases := []struct {
		name     string
		existing *corev1.Secret
		want     bool
	}{
		{"missing", nil, false},
		{"identical", with(func(*corev1.Secret) {}), true},
		{"foreign label added (Argo CD auto-label)", with(func(s *corev1.Secret) { s.Labels["argocd.argoproj.io/kubernetes-version"] = "1.36" }), true},
		{"foreign annotation added", with(func(s *corev1.Secret) { s.Annotations = map[string]string{"note": "x"} }), true},
		{"owned label changed", with(func(s *corev1.Secret) { s.Labels["env"] = "dev" }), false},
		{"owned data changed", with(func(s *corev1.Secret) { s.Data["server"] = []byte("https://evil") }), false},
		{"owned data removed", with(func(s *corev1.Secret) { delete(s.Data, "config") }), false},
		{"label fleetbridge applied before and no longer wants", with(func(s *corev1.Secret) { s.Labels["region"] = "eu" }), false},
		{"data key fleetbridge applied before and no longer wants", with(func(s *corev1.Secret) { s.Data["project"] = []byte("p") }), false},
		{"same key set by someone else is left alone", with(func(s *corev1.Secret) { s.ManagedFields = nil; s.Labels["region"] = "eu" }), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := secretUpToDate(tc.existing, desired); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
