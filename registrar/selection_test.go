package registrar

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

func argoReg(name, ns string, sel map[string]string) fleetv1.Registration {
	r := fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: fleetv1.RegistrationSpec{ArgoCD: &fleetv1.ArgoCDTarget{Namespace: ns}}}
	if sel != nil {
		r.Spec.ClusterSelector = &metav1.LabelSelector{MatchLabels: sel}
	}
	return r
}

func TestSelectFor(t *testing.T) {
	cluster := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "c1", Labels: map[string]string{"env": "prod"}}}
	deleted := argoReg("a-deleted", "argocd", nil)
	deleted.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	suspended := argoReg("a-suspended", "argocd", nil)
	suspended.Spec.Suspend = true
	kubeconfigMode := argoReg("z-kubeconfig", "argocd-2", nil)
	kubeconfigMode.Spec.Credentials.Mode = fleetv1.CredentialsKubeconfig
	nsSelected := argoReg("ns", "argocd", nil)
	nsSelected.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}
	badSelector := argoReg("bad", "argocd", nil)
	badSelector.Spec.ClusterSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Bogus"}}}

	cases := []struct {
		name      string
		regs      []fleetv1.Registration
		nsLabels  map[string]string
		active    []string
		conflicts []string
		frozen    []string
	}{
		{"matching selector", []fleetv1.Registration{argoReg("a", "argocd", map[string]string{"env": "prod"})}, nil, []string{"a"}, nil, nil},
		{"non-matching selector", []fleetv1.Registration{argoReg("a", "argocd", map[string]string{"env": "dev"})}, nil, nil, nil, nil},
		{"nil selector selects all", []fleetv1.Registration{argoReg("a", "argocd", nil)}, nil, []string{"a"}, nil, nil},
		{"same argocd namespace: first name wins", []fleetv1.Registration{argoReg("b", "argocd", nil), argoReg("a", "argocd", nil)}, nil,
			[]string{"a"}, []string{"b"}, nil},
		{"different namespaces, same ServiceAccount conflict", []fleetv1.Registration{argoReg("a", "argocd", nil), argoReg("b", "argocd-2", nil)}, nil,
			[]string{"a"}, []string{"b"}, nil},
		{"Kubeconfig mode needs no ServiceAccount", []fleetv1.Registration{argoReg("a", "argocd", nil), kubeconfigMode}, nil,
			[]string{"a", "z-kubeconfig"}, nil, nil},
		{"deleted registrations are inactive", []fleetv1.Registration{deleted, argoReg("b", "argocd", nil)}, nil, []string{"b"}, nil, nil},
		{"suspended keeps its claim", []fleetv1.Registration{suspended, argoReg("b", "argocd", nil)}, nil, nil, []string{"b"}, []string{"a-suspended"}},
		{"namespace selector matches", []fleetv1.Registration{nsSelected}, map[string]string{"tier": "gold"}, []string{"ns"}, nil, nil},
		{"namespace selector misses", []fleetv1.Registration{nsSelected}, map[string]string{"tier": "bronze"}, nil, nil, nil},
		{"invalid selector selects nothing", []fleetv1.Registration{badSelector}, nil, nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sel := selectFor(cluster, tc.nsLabels, tc.regs)
			var active, conflicts, frozen []string
			for _, r := range sel.active {
				active = append(active, r.Name)
			}
			for n := range sel.conflicts {
				conflicts = append(conflicts, n)
			}
			for n := range sel.frozen {
				frozen = append(frozen, n)
			}
			if !equalStrings(active, tc.active) || !equalStrings(conflicts, tc.conflicts) || !equalStrings(frozen, tc.frozen) {
				t.Fatalf("active %v conflicts %v frozen %v; want %v %v %v", active, conflicts, frozen, tc.active, tc.conflicts, tc.frozen)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestControlPlaneInitialized(t *testing.T) {
	cond := func(typ string) []metav1.Condition {
		return []metav1.Condition{{Type: typ, Status: metav1.ConditionTrue}}
	}
	cases := []struct {
		name   string
		status clusterv1.ClusterStatus
		want   bool
	}{
		{"nothing yet", clusterv1.ClusterStatus{}, false},
		{"initialization field", clusterv1.ClusterStatus{Initialization: clusterv1.ClusterInitializationStatus{ControlPlaneInitialized: ptr.To(true)}}, true},
		{"initialization field false", clusterv1.ClusterStatus{Initialization: clusterv1.ClusterInitializationStatus{ControlPlaneInitialized: ptr.To(false)}}, false},
		{"v1beta2 ControlPlaneInitialized", clusterv1.ClusterStatus{Conditions: cond("ControlPlaneInitialized")}, true},
		{"v1beta2 Available", clusterv1.ClusterStatus{Conditions: cond("Available")}, true},
		{"phase is not consulted", clusterv1.ClusterStatus{Phase: "Provisioned"}, false},
		{"v1beta1 conditions", clusterv1.ClusterStatus{Deprecated: &clusterv1.ClusterDeprecatedStatus{V1Beta1: &clusterv1.ClusterV1Beta1DeprecatedStatus{
			Conditions: clusterv1.Conditions{{Type: "ControlPlaneInitialized", Status: "True"}}}}}, true},
		{"v1beta1 condition false", clusterv1.ClusterStatus{Deprecated: &clusterv1.ClusterDeprecatedStatus{V1Beta1: &clusterv1.ClusterV1Beta1DeprecatedStatus{
			Conditions: clusterv1.Conditions{{Type: "Ready", Status: "False"}}}}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := controlPlaneInitialized(&clusterv1.Cluster{Status: tc.status}); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if !paused(&clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{clusterv1.PausedAnnotation: ""}}}) {
		t.Fatal("paused annotation not honoured")
	}
	if !paused(&clusterv1.Cluster{Spec: clusterv1.ClusterSpec{Paused: ptr.To(true)}}) {
		t.Fatal("spec.paused not honoured")
	}
}
