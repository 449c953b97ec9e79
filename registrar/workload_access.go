package registrar

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/workloadhttp"
)

// reasonError is a failure with the condition and Event reason it is reported under. Messages never
// contain credentials.
type reasonError struct {
	reason string
	msg    string
	cause  error
}

func (e *reasonError) Error() string { return e.msg }
func (e *reasonError) Unwrap() error { return e.cause }

func isDeniedAddress(err error) bool {
	var denied *workloadhttp.DeniedAddressError
	return errors.As(err, &denied)
}

func failure(reason, format string, args ...any) error {
	return &reasonError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// reasonOf classifies an error from a workload-cluster call.
func reasonOf(err error, fallback string) string {
	var re *reasonError
	switch {
	case errors.As(err, &re):
		return re.reason
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return fleetv1.ReasonAccessDenied
	case isDeniedAddress(err):
		return fleetv1.ReasonDeniedAddress
	case errors.Is(err, workloadhttp.ErrResponseTooLarge):
		return fleetv1.ReasonClusterUnreachable
	default:
		return fallback
	}
}

// workloadAccess creates and removes what a Registration needs on one workload cluster: a ServiceAccount
// bound to a ClusterRole (cluster-wide, or in listed namespaces only), and tokens for it.
type workloadAccess struct {
	kube    workloadClient
	reg     *fleetv1.Registration
	cluster types.NamespacedName
	// gate remembers what was last checked on the workload cluster; nil means nothing is remembered.
	gate *workloadGate
}

func (w workloadAccess) labels() map[string]string {
	return owned.Labels(w.reg.Name, w.cluster, owned.OutputWorkloadAccess)
}

func (w workloadAccess) bindingName() string {
	_, name := serviceAccount(w.reg)
	return "fleetbridge:" + name
}

func (w workloadAccess) subject() rbacv1.Subject {
	ns, name := serviceAccount(w.reg)
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
}

func (w workloadAccess) roleRef() rbacv1.RoleRef {
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole(w.reg)}
}

// scopedNamespaces are the namespaces the ServiceAccount is bound in; none means cluster-wide.
func (w workloadAccess) scopedNamespaces() []string {
	if w.reg.Spec.ArgoCD == nil {
		return nil
	}
	return w.reg.Spec.ArgoCD.Namespaces
}

// What workloadGate remembers of a Registration in Kubeconfig mode, which asks for nothing on a
// workload cluster: checked to hold nothing of it (noAccess), or to be checked at the next reconcile.
const (
	noAccess         = "none"
	noAccessDeferred = "none, check next"
	// deferredCheck prefixes the access signature of a Registration whose leftovers are checked at the
	// next reconcile.
	deferredCheck = "check next: "
)

// accessSignature identifies the access a Registration asks for on each workload cluster: ServiceAccount,
// ClusterRole and namespaces. It never equals noAccess or noAccessDeferred (it holds a "/").
func accessSignature(reg *fleetv1.Registration) string {
	ns, name := serviceAccount(reg)
	var scoped []string
	if reg.Spec.ArgoCD != nil {
		scoped = slices.Sorted(slices.Values(reg.Spec.ArgoCD.Namespaces))
	}
	return ns + "/" + name + " " + clusterRole(reg) + " " + strings.Join(scoped, ",")
}

// ensure makes the ServiceAccount and its bindings match the Registration, removes every other object
// labelled for this Registration and Cluster, and returns the ServiceAccount's UID. It writes only what
// differs. Finding what else is labelled costs three lists, so it runs once per process for each access
// the Registration asks for (workloadGate remembers), and after every failure: what is left over comes
// from an earlier spec or mode, or from an earlier process.
func (w workloadAccess) ensure(ctx context.Context) (types.UID, error) {
	uid, err := w.ensureWanted(ctx)
	signature := accessSignature(w.reg)
	if err == nil && w.gate.isVerified(w.reg.Name, w.cluster, signature) {
		return uid, nil
	}
	if err == nil && w.gate != nil && w.gate.verifiedAs(w.reg.Name, w.cluster) == "" {
		// The first look in this process: what an earlier process or spec left is found at the next
		// reconcile, so a cold start of a fleet costs no lists (they were a quarter of its workload calls).
		// A spec change, which is what leaves access behind while the process runs, checks at once.
		w.gate.setVerified(w.reg.Name, w.cluster, deferredCheck+signature)
		return uid, nil
	}
	// What the spec no longer asks for goes even when what it asks for cannot be written: a narrower
	// role or namespace list that fails must not leave the wider grant behind.
	removeErr := w.removeUnneeded(ctx)
	if err != nil {
		if removeErr != nil {
			log.FromContext(ctx).V(1).Info("could not remove workload access the Registration no longer asks for; retried with the failure",
				"registration", w.reg.Name, "error", shortError(removeErr))
		}
		return "", err
	}
	if removeErr != nil {
		return "", removeErr
	}
	w.gate.setVerified(w.reg.Name, w.cluster, signature)
	return uid, nil
}

// ensureWanted creates or repairs the ServiceAccount and bindings the Registration asks for.
func (w workloadAccess) ensureWanted(ctx context.Context) (types.UID, error) {
	ns, name := serviceAccount(w.reg)
	role := clusterRole(w.reg)
	if _, err := w.kube.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return "", failure(fleetv1.ReasonAccessDenied, "ClusterRole %s does not exist on the workload cluster", role)
		}
		return "", fmt.Errorf("get ClusterRole %s: %w", role, err)
	}
	sa, err := w.kube.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		sa, err = w.kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: w.labels()},
		}, metav1.CreateOptions{FieldManager: owned.FieldManager})
		if err != nil {
			return "", fmt.Errorf("create ServiceAccount %s/%s: %w", ns, name, err)
		}
	case err != nil:
		return "", fmt.Errorf("get ServiceAccount %s/%s: %w", ns, name, err)
	case sa.Labels[owned.LabelRegistration] != w.reg.Name:
		return "", failure(fleetv1.ReasonConflict, "ServiceAccount %s/%s on the workload cluster is not managed by this Registration", ns, name)
	}

	subject, roleRef := w.subject(), w.roleRef()
	scoped := w.scopedNamespaces()
	if len(scoped) == 0 {
		if err := w.ensureClusterRoleBinding(ctx, subject, roleRef); err != nil {
			return "", err
		}
	} else {
		for _, target := range scoped {
			if err := w.ensureRoleBinding(ctx, target, subject, roleRef); err != nil {
				return "", err
			}
		}
	}
	return sa.UID, nil
}

func (w workloadAccess) ensureClusterRoleBinding(ctx context.Context, subject rbacv1.Subject, roleRef rbacv1.RoleRef) error {
	api := w.kube.RbacV1().ClusterRoleBindings()
	want := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: w.bindingName(), Labels: w.labels()},
		Subjects:   []rbacv1.Subject{subject}, RoleRef: roleRef,
	}
	got, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, want, metav1.CreateOptions{FieldManager: owned.FieldManager})
		return wrap(err, "create ClusterRoleBinding %s", want.Name)
	case err != nil:
		return wrap(err, "get ClusterRoleBinding %s", want.Name)
	case got.Labels[owned.LabelRegistration] != w.reg.Name:
		return failure(fleetv1.ReasonConflict, "ClusterRoleBinding %s on the workload cluster is not managed by this Registration", want.Name)
	case got.RoleRef == roleRef && len(got.Subjects) == 1 && got.Subjects[0] == subject:
		return nil
	}
	// roleRef is immutable: replace the binding.
	if err := api.Delete(ctx, want.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return wrap(err, "replace ClusterRoleBinding %s", want.Name)
	}
	_, err = api.Create(ctx, want, metav1.CreateOptions{FieldManager: owned.FieldManager})
	return wrap(err, "create ClusterRoleBinding %s", want.Name)
}

func (w workloadAccess) ensureRoleBinding(ctx context.Context, namespace string, subject rbacv1.Subject, roleRef rbacv1.RoleRef) error {
	api := w.kube.RbacV1().RoleBindings(namespace)
	want := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: w.bindingName(), Labels: w.labels()},
		Subjects:   []rbacv1.Subject{subject}, RoleRef: roleRef,
	}
	got, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, want, metav1.CreateOptions{FieldManager: owned.FieldManager})
		if apierrors.IsNotFound(err) {
			return failure(fleetv1.ReasonAccessDenied, "namespace %s listed in spec.argocd.namespaces does not exist on the workload cluster", namespace)
		}
		return wrap(err, "create RoleBinding %s/%s", namespace, want.Name)
	case err != nil:
		return wrap(err, "get RoleBinding %s/%s", namespace, want.Name)
	case got.Labels[owned.LabelRegistration] != w.reg.Name:
		return failure(fleetv1.ReasonConflict, "RoleBinding %s/%s on the workload cluster is not managed by this Registration", namespace, want.Name)
	case got.RoleRef == roleRef && len(got.Subjects) == 1 && got.Subjects[0] == subject:
		return nil
	}
	if err := api.Delete(ctx, want.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return wrap(err, "replace RoleBinding %s/%s", namespace, want.Name)
	}
	_, err = api.Create(ctx, want, metav1.CreateOptions{FieldManager: owned.FieldManager})
	return wrap(err, "create RoleBinding %s/%s", namespace, want.Name)
}

// removeUnneeded deletes the objects labelled for this Registration and Cluster that the spec does not
// ask for: a ServiceAccount of an earlier name or namespace, a binding of an earlier ClusterRole,
// subject or namespace list, a ClusterRoleBinding once access is namespaced and RoleBindings once it is
// cluster-wide.
func (w workloadAccess) removeUnneeded(ctx context.Context) error {
	sel := labels.SelectorFromSet(labels.Set{
		owned.LabelRegistration:     w.reg.Name,
		owned.LabelClusterNamespace: w.cluster.Namespace,
		owned.LabelClusterName:      w.cluster.Name,
	})
	found, listErr := listAccess(ctx, w.kube, sel)
	ns, name := serviceAccount(w.reg)
	subject, roleRef := w.subject(), w.roleRef()
	scoped := w.scopedNamespaces()
	current := func(objName string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) bool {
		return objName == w.bindingName() && ref == roleRef && len(subjects) == 1 && subjects[0] == subject
	}
	stale := accessObjects{bindingsUnknown: found.bindingsUnknown}
	for _, o := range found.clusterRoleBindings {
		if len(scoped) > 0 || !current(o.Name, o.RoleRef, o.Subjects) {
			stale.clusterRoleBindings = append(stale.clusterRoleBindings, o)
		}
	}
	for _, o := range found.roleBindings {
		if !slices.Contains(scoped, o.Namespace) || !current(o.Name, o.RoleRef, o.Subjects) {
			stale.roleBindings = append(stale.roleBindings, o)
		}
	}
	for _, o := range found.serviceAccounts {
		if o.Namespace != ns || o.Name != name {
			stale.serviceAccounts = append(stale.serviceAccounts, o)
		}
	}
	return errors.Join(listErr, deleteAccess(ctx, w.kube, stale))
}

// ensureNone removes everything of the Registration on the workload cluster, for a Registration in
// Kubeconfig mode (which needs nothing there): the ServiceAccount and bindings of an earlier
// ServiceAccountToken mode would otherwise keep their grant. It checks once per process and Cluster,
// and again after each time the Registration asked for access there (workloadGate remembers), so a
// steady fleet lists nothing. The first look of a process checks at once only when a Secret the
// Registration wrote for the Cluster (written) still carries a token; otherwise the check waits for the
// next reconcile, so a cold start of a Kubeconfig fleet lists nothing on its way to the Secrets. An edit
// of those Secrets can only move the check by one reconcile. Failures are logged and retried on the
// next reconcile, except a refusal: credentials that may not list these objects are not asked again
// until the Registration changes mode.
func (w workloadAccess) ensureNone(ctx context.Context, written []corev1.Secret) {
	if w.kube == nil {
		return
	}
	switch w.gate.verifiedAs(w.reg.Name, w.cluster) {
	case noAccess:
		return
	case "":
		if w.gate != nil && !carriesToken(w.reg.Name, written) {
			w.gate.setVerified(w.reg.Name, w.cluster, noAccessDeferred)
			return
		}
	}
	err := removeWorkloadAccess(ctx, w.kube, w.reg.Name)
	if err != nil {
		log.FromContext(ctx).Info("could not check that no workload ServiceAccount of the Registration is left",
			"registration", w.reg.Name, "error", shortError(err))
		if !onlyDenied(err) {
			// The Secrets written next carry no token, so only this mark keeps the next check.
			w.gate.setVerified(w.reg.Name, w.cluster, noAccessDeferred)
			return
		}
	}
	w.gate.setVerified(w.reg.Name, w.cluster, noAccess)
}

// carriesToken says whether a Secret the Registration wrote holds the timing of a minted token.
func carriesToken(registration string, written []corev1.Secret) bool {
	for _, s := range written {
		if s.Labels[owned.LabelRegistration] == registration && s.Annotations[owned.AnnotationTokenExpiresAt] != "" {
			return true
		}
	}
	return false
}

// onlyDenied says whether every error joined in err is a Forbidden or Unauthorized answer.
func onlyDenied(err error) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if !onlyDenied(e) {
				return false
			}
		}
		return true
	}
	return apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)
}

// mint asks the workload API server for a ServiceAccount token with the Registration's TTL.
func (w workloadAccess) mint(ctx context.Context, now time.Time) (currentToken, error) {
	ns, name := serviceAccount(w.reg)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(int64(tokenTTL(w.reg).Seconds())),
	}}
	resp, err := w.kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, req, metav1.CreateOptions{})
	if err != nil {
		return currentToken{}, failure(reasonOf(err, fleetv1.ReasonTokenRequestFailed), "TokenRequest for ServiceAccount %s/%s failed: %s", ns, name, apiReason(err))
	}
	if resp.Status.Token == "" {
		return currentToken{}, failure(fleetv1.ReasonTokenRequestFailed, "TokenRequest for ServiceAccount %s/%s returned no token", ns, name)
	}
	// Timing is kept on the controller's clock: the lifetime the server granted (which may be capped
	// below the TTL asked for) counted from now. Mixing in the server's clock would let skew cause renewals.
	life := tokenLifetime(resp.Status.Token)
	if life <= 0 {
		life = resp.Status.ExpirationTimestamp.Sub(now)
	}
	issued := now.Truncate(time.Second)
	return currentToken{Token: resp.Status.Token, Times: tokenTimes{IssuedAt: issued, ExpiresAt: issued.Add(life)}}, nil
}

// removeWorkloadAccess deletes every ServiceAccount and binding this Registration created on the
// workload cluster, which revokes every token minted for it. Objects are found by label, so it works
// after the spec changed.
func removeWorkloadAccess(ctx context.Context, kube workloadClient, registration string) error {
	found, err := listAccess(ctx, kube, owned.ForRegistration(registration))
	return errors.Join(err, deleteAccess(ctx, kube, found))
}

// accessObjects are fleetbridge's ServiceAccounts and bindings on a workload cluster.
type accessObjects struct {
	serviceAccounts     []corev1.ServiceAccount
	roleBindings        []rbacv1.RoleBinding
	clusterRoleBindings []rbacv1.ClusterRoleBinding
	// bindingsUnknown: a list of bindings failed, so some may exist that are not listed here.
	bindingsUnknown bool
}

// listAccess lists the ServiceAccounts, RoleBindings and ClusterRoleBindings that match sel, the three
// lists in parallel: a workload cluster is a network away, and one round trip costs less than three.
// What a failed list would have found is missing from the result, which holds what the others found.
func listAccess(ctx context.Context, kube workloadClient, sel labels.Selector) (accessObjects, error) {
	opts := metav1.ListOptions{LabelSelector: sel.String()}
	var out accessObjects
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Go(func() {
		list, err := kube.CoreV1().ServiceAccounts("").List(ctx, opts)
		if errs[0] = wrap(err, "list ServiceAccounts"); err == nil {
			out.serviceAccounts = list.Items
		}
	})
	wg.Go(func() {
		list, err := kube.RbacV1().RoleBindings("").List(ctx, opts)
		if errs[1] = wrap(err, "list RoleBindings"); err == nil {
			out.roleBindings = list.Items
		}
	})
	wg.Go(func() {
		list, err := kube.RbacV1().ClusterRoleBindings().List(ctx, opts)
		if errs[2] = wrap(err, "list ClusterRoleBindings"); err == nil {
			out.clusterRoleBindings = list.Items
		}
	})
	wg.Wait()
	out.bindingsUnknown = errs[1] != nil || errs[2] != nil
	return out, errors.Join(errs...)
}

// deleteAccess deletes the bindings, then, only if every binding is known to be gone, the
// ServiceAccounts: a ServiceAccount left behind is found again by the next check, while a binding whose
// ServiceAccount is gone would grant its role to whoever creates one of that name. Each delete is
// conditional on the UID listed, so an object recreated meanwhile stays.
func deleteAccess(ctx context.Context, kube workloadClient, objs accessObjects) error {
	var errs []error
	for _, o := range objs.clusterRoleBindings {
		errs = append(errs, wrap(ignoreGone(kube.RbacV1().ClusterRoleBindings().Delete(ctx, o.Name, deleteExactly(o.UID))),
			"delete ClusterRoleBinding %s", o.Name))
	}
	for _, o := range objs.roleBindings {
		errs = append(errs, wrap(ignoreGone(kube.RbacV1().RoleBindings(o.Namespace).Delete(ctx, o.Name, deleteExactly(o.UID))),
			"delete RoleBinding %s/%s", o.Namespace, o.Name))
	}
	if err := errors.Join(errs...); err != nil || objs.bindingsUnknown {
		return err
	}
	for _, o := range objs.serviceAccounts {
		errs = append(errs, wrap(ignoreGone(kube.CoreV1().ServiceAccounts(o.Namespace).Delete(ctx, o.Name, deleteExactly(o.UID))),
			"delete ServiceAccount %s/%s", o.Namespace, o.Name))
	}
	return errors.Join(errs...)
}

func deleteExactly(uid types.UID) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
}

// ignoreGone ignores a delete that found the object gone, or replaced by one of another UID.
func ignoreGone(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// apiReason is a short, credential-free description of an API error.
func apiReason(err error) string {
	if status, ok := err.(apierrors.APIStatus); ok {
		s := status.Status()
		return fmt.Sprintf("%s (%d)", s.Reason, s.Code)
	}
	return err.Error()
}
