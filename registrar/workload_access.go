package registrar

import (
	"context"
	"errors"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

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
}

func (w workloadAccess) labels() map[string]string {
	return owned.Labels(w.reg.Name, w.cluster, owned.OutputWorkloadAccess)
}

func (w workloadAccess) bindingName() string {
	_, name := serviceAccount(w.reg)
	return "fleetbridge:" + name
}

// ensure makes the ServiceAccount and its bindings match the Registration and returns the
// ServiceAccount's UID. It writes only what differs.
func (w workloadAccess) ensure(ctx context.Context) (types.UID, error) {
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

	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
	roleRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}
	var scoped []string
	if w.reg.Spec.ArgoCD != nil {
		scoped = w.reg.Spec.ArgoCD.Namespaces
	}
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
	if err := w.removeStaleBindings(ctx, len(scoped) > 0, scoped); err != nil {
		return "", err
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

// removeStaleBindings deletes owned bindings the current spec no longer asks for (a namespace dropped
// from spec.argocd.namespaces, or a switch between cluster-wide and namespaced access).
func (w workloadAccess) removeStaleBindings(ctx context.Context, namespaced bool, namespaces []string) error {
	sel := metav1.ListOptions{LabelSelector: owned.ForRegistration(w.reg.Name).String()}
	keep := map[string]bool{}
	for _, ns := range namespaces {
		keep[ns] = true
	}
	rbs, err := w.kube.RbacV1().RoleBindings("").List(ctx, sel)
	if err != nil {
		return wrap(err, "list RoleBindings")
	}
	for _, rb := range rbs.Items {
		if namespaced && keep[rb.Namespace] && rb.Name == w.bindingName() {
			continue
		}
		if err := w.kube.RbacV1().RoleBindings(rb.Namespace).Delete(ctx, rb.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return wrap(err, "delete RoleBinding %s/%s", rb.Namespace, rb.Name)
		}
	}
	if namespaced {
		crbs, err := w.kube.RbacV1().ClusterRoleBindings().List(ctx, sel)
		if err != nil {
			return wrap(err, "list ClusterRoleBindings")
		}
		for _, crb := range crbs.Items {
			if err := w.kube.RbacV1().ClusterRoleBindings().Delete(ctx, crb.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return wrap(err, "delete ClusterRoleBinding %s", crb.Name)
			}
		}
	}
	return nil
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

// remove deletes every ServiceAccount and binding this Registration created on the workload cluster,
// which revokes every token minted for it. Objects are found by label, so it works after the spec changed.
func removeWorkloadAccess(ctx context.Context, kube workloadClient, registration string) error {
	sel := metav1.ListOptions{LabelSelector: owned.ForRegistration(registration).String()}
	var errs []error
	if crbs, err := kube.RbacV1().ClusterRoleBindings().List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		for _, o := range crbs.Items {
			errs = append(errs, ignoreNotFound(kube.RbacV1().ClusterRoleBindings().Delete(ctx, o.Name, metav1.DeleteOptions{})))
		}
	}
	if rbs, err := kube.RbacV1().RoleBindings("").List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		for _, o := range rbs.Items {
			errs = append(errs, ignoreNotFound(kube.RbacV1().RoleBindings(o.Namespace).Delete(ctx, o.Name, metav1.DeleteOptions{})))
		}
	}
	if sas, err := kube.CoreV1().ServiceAccounts("").List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		for _, o := range sas.Items {
			errs = append(errs, ignoreNotFound(kube.CoreV1().ServiceAccounts(o.Namespace).Delete(ctx, o.Name, metav1.DeleteOptions{})))
		}
	}
	return errors.Join(errs...)
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
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
