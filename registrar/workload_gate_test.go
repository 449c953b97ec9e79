package registrar

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
)

// A deletion waits for the registers in flight, and no register of a closed Registration runs, whichever
// comes first; a new Registration of the same name is not closed.
func TestWorkloadGateOrdersRegistersAndDeletion(t *testing.T) {
	ctx := context.Background()
	cluster := types.NamespacedName{Namespace: "ns", Name: "c"}
	reg := &fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "r", UID: "uid-1"}}
	g := newWorkloadGate(nil)

	inside, finish := make(chan struct{}), make(chan struct{})
	ran := make(chan bool, 1)
	go func() {
		ran <- g.run(ctx, reg, cluster, func() {
			close(inside)
			<-finish
		})
	}()
	<-inside
	closed := make(chan struct{})
	go func() {
		g.close(reg)
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("close returned while a register was in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(finish)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return after the register finished")
	}
	if !<-ran {
		t.Fatal("the register in flight reported it did not run")
	}

	if g.run(ctx, reg, cluster, func() { t.Error("a register of a closed Registration ran") }) {
		t.Fatal("run reported a register of a closed Registration")
	}
	stale := reg.DeepCopy() // a copy read before the deletion
	if g.run(ctx, stale, cluster, func() { t.Error("a register of a stale copy ran") }) {
		t.Fatal("run reported a register of a stale copy")
	}
	again := &fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "r", UID: "uid-2"}}
	if !g.run(ctx, again, cluster, func() {}) {
		t.Fatal("a new Registration of the same name is closed")
	}
}

// What was checked is remembered per Registration, Cluster and access, and dropped when the Cluster is
// forgotten or the Registration closed.
func TestWorkloadGateRemembersChecks(t *testing.T) {
	a, b := types.NamespacedName{Namespace: "ns", Name: "a"}, types.NamespacedName{Namespace: "ns", Name: "b"}
	reg := &fleetv1.Registration{ObjectMeta: metav1.ObjectMeta{Name: "r", UID: "uid-1"}}
	g := newWorkloadGate(nil)
	sig := accessSignature(reg)
	if g.isVerified("r", a, sig) {
		t.Fatal("verified before any check")
	}
	g.setVerified("r", a, sig)
	g.setVerified("r", b, noAccess)
	if !g.isVerified("r", a, sig) || g.isVerified("r", a, noAccess) || !g.isVerified("r", b, noAccess) {
		t.Fatal("checks not remembered per Cluster and access")
	}
	g.forget("r", a)
	if g.isVerified("r", a, sig) || !g.isVerified("r", b, noAccess) {
		t.Fatal("forget dropped the wrong check")
	}
	g.close(reg)
	if g.isVerified("r", b, noAccess) {
		t.Fatal("close kept the checks of the Registration")
	}

	var none *workloadGate // a workloadAccess built without a gate remembers nothing
	none.setVerified("r", a, sig)
	if none.isVerified("r", a, sig) {
		t.Fatal("a nil gate remembered a check")
	}
}

// The signature changes with everything ensure writes, and not with the order of the namespaces.
func TestAccessSignature(t *testing.T) {
	base := &fleetv1.Registration{Spec: fleetv1.RegistrationSpec{ArgoCD: &fleetv1.ArgoCDTarget{Namespaces: []string{"b", "a"}}}}
	variants := map[string]func(*fleetv1.Registration){
		"name":       func(r *fleetv1.Registration) { r.Spec.Credentials.ServiceAccount.Name = "other" },
		"namespace":  func(r *fleetv1.Registration) { r.Spec.Credentials.ServiceAccount.Namespace = "other" },
		"role":       func(r *fleetv1.Registration) { r.Spec.Credentials.ClusterRole = "view" },
		"namespaces": func(r *fleetv1.Registration) { r.Spec.ArgoCD.Namespaces = []string{"a"} },
		"wide":       func(r *fleetv1.Registration) { r.Spec.ArgoCD.Namespaces = nil },
	}
	for name, change := range variants {
		r := base.DeepCopy()
		change(r)
		if accessSignature(r) == accessSignature(base) {
			t.Errorf("changing the %s keeps the signature %q", name, accessSignature(r))
		}
	}
	reordered := base.DeepCopy()
	reordered.Spec.ArgoCD.Namespaces = []string{"a", "b"}
	if accessSignature(reordered) != accessSignature(base) {
		t.Error("the order of the namespaces changes the signature")
	}
	if accessSignature(base) == noAccess {
		t.Error("a signature equals noAccess")
	}
}
