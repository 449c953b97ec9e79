package registrar

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/flux"
	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// clusterScope is what one registration of one Cluster for one Registration works with. The phases of
// register fill it in order; each reads only what the phases before it set.
type clusterScope struct {
	reg     *fleetv1.Registration
	cluster *clusterv1.Cluster
	key     types.NamespacedName
	// written are the Secrets this Registration wrote for the Cluster, as the cache shows them.
	written []corev1.Secret
	mode    fleetv1.CredentialsMode

	conn  *connection
	facts clusterFacts
	times *tokenTimes
	// config is what the Argo CD output authenticates with; fluxToken what the Flux outputs carry.
	config    argocd.ClusterConfig
	fluxToken string
	desired   []*corev1.Secret
	// keepFlux keeps every Flux output as it is: rendering them failed, and a failure never deletes one.
	keepFlux bool

	// outputErrs are the failures of single outputs; the other outputs are written regardless.
	outputErrs []error
	repaired   []string
	// insecure: TLS verification is off (allowed by spec.credentials.allowInsecure); unverified: an
	// allowlisted exec plugin authenticates, which the controller cannot check itself.
	insecure, unverified bool
	execCommand          string
	// windowWrite: a token minted ahead waits for this renewal window, whose reconcile only writes it (the
	// reconcile a lead before probed the cluster and checked its access); rotated: this reconcile
	// replaces the token the outputs carry.
	windowWrite, rotated bool
	// probe is what verifyAccess found (a window write counts the probe of a lead before); probedVersion
	// is the version the workload API server itself answered in this reconcile.
	probe         probeOutcome
	probedVersion string
}

// seen is what the phases that ran learnt of the workload cluster (nil when the kubeconfig could not be
// read): what the probe found, and what a probe in this reconcile confirmed. Only that is published in
// a ClusterProfile: the TLS handshake verified the server and the CA, and the version is the server's own
// answer. A window write probed a lead before, with credentials that may have changed since, and the
// version label on an output is anyone's who can edit the output.
func (s *clusterScope) seen() *clusterSeen {
	if s.conn == nil {
		return nil
	}
	out := &clusterSeen{probe: s.probe}
	if s.probe == probeAnswered && !s.windowWrite {
		out.creds, out.version = s.conn.creds, s.probedVersion
	}
	return out
}

// phase is one step of register; its error carries the reason it is reported under.
type phase func(ctx context.Context, s *clusterScope) error

// errWaiting stops register without failing: the cluster is not ready to be registered yet.
var errWaiting = failure(fleetv1.ReasonWaitingForControlPlane, "the control plane is not initialized yet")

// register writes every output of one Registration for one Cluster and reports the outcome. The phases
// run in order: connect (the CAPI kubeconfig, checked against the platform team's policy), verify access
// (a probe with working credentials), credentials (the workload ServiceAccount and its token), render,
// apply (each output on its own), prune.
func (r *ClusterReconciler) register(ctx context.Context, reg *fleetv1.Registration, cluster *clusterv1.Cluster, written []corev1.Secret) (res clusterResult) {
	s := &clusterScope{reg: reg, cluster: cluster, key: types.NamespacedName{Namespace: cluster.Namespace, Name: cluster.Name},
		written: ownedBy(reg.Name, written), mode: credentialsMode(reg)}
	seed := renewalSeed(cluster.UID, reg.Name)
	s.windowWrite = s.mode == fleetv1.CredentialsServiceAccountToken && r.tokens.writesPending(reg.Name, s.key, seed)
	defer func() {
		res.seen = s.seen()
		s.conn.close()
	}()
	for _, p := range []phase{r.connect, r.verifyAccess, r.credentials, r.render, r.apply, r.prune} {
		if err := p(ctx, s); err != nil {
			if err == errWaiting {
				return clusterResult{Reason: fleetv1.ReasonWaitingForControlPlane, Message: err.Error()}
			}
			return failed(err, fleetv1.ReasonWriteFailed)
		}
	}
	for _, name := range s.repaired {
		r.Recorder.Eventf(cluster, reg, corev1.EventTypeNormal, fleetv1.ReasonRepaired, "Repair",
			"Registration %s: wrote Secret %s back, changed or deleted by someone else", reg.Name, name)
	}
	res = clusterResult{Registered: true, Reason: fleetv1.ReasonRegistered, Message: "registered",
		Insecure: s.insecure, Unverified: s.unverified}
	var notes []string
	if s.insecure {
		notes = append(notes, "TLS verification is off (spec.credentials.allowInsecure)")
	}
	if s.unverified {
		notes = append(notes, fmt.Sprintf("the controller could not verify the credential itself: Argo CD runs the allowlisted exec plugin %q", s.execCommand))
	}
	if len(notes) > 0 {
		res.Message += "; " + strings.Join(notes, "; ")
	}
	if len(s.outputErrs) > 0 {
		first := s.outputErrs[0]
		res = clusterResult{Failing: true, Reason: reasonOf(first, fleetv1.ReasonWriteFailed), Message: shortError(errors.Join(s.outputErrs...))}
	}
	if s.times != nil {
		res.TokenExpiresAt = s.times.ExpiresAt
		res.renewAt = r.tokens.nextDue(reg.Name, s.key, seed)
		tokenExpirySeconds.WithLabelValues(reg.Name, s.key.Namespace, s.key.Name).Set(s.times.ExpiresAt.Sub(r.Now()).Seconds())
	}
	return res
}

// connect reads the Cluster's CAPI kubeconfig and refuses what the platform team does not allow: exec
// plugins outside the allowlist, TLS verification turned off, denied addresses.
func (r *ClusterReconciler) connect(ctx context.Context, s *clusterScope) error {
	if !controlPlaneInitialized(s.cluster) {
		return errWaiting
	}
	conn, err := r.conns.get(ctx, s.key)
	if err != nil {
		return withFallback(err, fleetv1.ReasonKubeconfigInvalid)
	}
	s.conn = conn
	policy := r.policyFor(s.reg)
	if err := conn.creds.Check(policy); err != nil {
		var pe *kubeconfig.PolicyError
		if errors.As(err, &pe) {
			return failure(pe.Reason, "%s", pe.Message)
		}
		return withFallback(err, fleetv1.ReasonKubeconfigInvalid)
	}
	s.insecure = conn.creds.TransportInsecure()
	if s.mode == fleetv1.CredentialsServiceAccountToken && conn.kube == nil {
		return failure(fleetv1.ReasonKubeconfigInvalid,
			"the CAPI kubeconfig has only an exec plugin, which the controller does not run; ServiceAccountToken mode needs embedded credentials")
	}
	if conn.kube == nil {
		// Only an allowlisted exec plugin gets here (Check refused the rest).
		s.unverified, s.execCommand = true, conn.creds.Exec.Command
	}
	return nil
}

// policyFor is what one Registration may use: its own allowances, within the controller's ceiling.
func (r *ClusterReconciler) policyFor(reg *fleetv1.Registration) kubeconfig.Policy {
	var allowed []string
	for _, cmd := range reg.Spec.Credentials.AllowedExecCommands {
		if slices.Contains(r.AllowedExecCommands, cmd) {
			allowed = append(allowed, cmd)
		}
	}
	return kubeconfig.Policy{AllowedExecCommands: allowed, AllowInsecure: reg.Spec.Credentials.AllowInsecure, DeniedCIDRs: r.DeniedCIDRs}
}

// verifyAccess probes the workload API server with the credentials the controller holds. Only an
// allowlisted exec plugin's cluster is probed anonymously, where any HTTP answer shows it is up.
func (r *ClusterReconciler) verifyAccess(ctx context.Context, s *clusterScope) error {
	if s.windowWrite {
		s.facts = clusterFacts{KubernetesVersion: versionLabelOf(s.reg.Name, s.written)}
		s.probe = probeAnswered
		return nil
	}
	facts, err := s.conn.probe(ctx)
	if err != nil {
		s.probe = probeFailed
		// Keep the Secrets (the cluster may be back in a minute) but mark them.
		if markErr := r.markUnreachable(ctx, s.reg.Name, s.written); markErr != nil {
			log.FromContext(ctx).Info("could not mark secrets unreachable", "error", shortError(markErr))
		}
		return withFallback(err, fleetv1.ReasonClusterUnreachable)
	}
	s.probe, s.probedVersion = probeAnswered, facts.KubernetesVersion
	if facts.KubernetesVersion == "" {
		facts.KubernetesVersion = versionLabelOf(s.reg.Name, s.written)
	}
	s.facts = facts
	return nil
}

// credentials makes the workload ServiceAccount and a token for it (ServiceAccountToken mode), or
// converts the CAPI kubeconfig's own credentials (Kubeconfig mode).
func (r *ClusterReconciler) credentials(ctx context.Context, s *clusterScope) error {
	switch s.mode {
	case fleetv1.CredentialsServiceAccountToken:
		access := workloadAccess{kube: s.conn.kube, reg: s.reg, cluster: s.key, gate: r.gate}
		var uid types.UID
		if !s.windowWrite {
			var err error
			if uid, err = access.ensure(ctx); err != nil {
				return withFallback(err, fleetv1.ReasonTokenRequestFailed)
			}
		}
		tok, rotated, err := r.tokens.token(ctx, access, uid, s.written, renewalSeed(s.cluster.UID, s.reg.Name))
		if err != nil {
			return withFallback(err, fleetv1.ReasonTokenRequestFailed)
		}
		s.rotated = rotated
		s.config = argocd.BearerTokenConfig(s.conn.creds, tok.Token)
		s.fluxToken = tok.Token
		s.times = &tok.Times
	case fleetv1.CredentialsKubeconfig:
		// A switch from ServiceAccountToken mode leaves nothing privileged behind on the workload cluster.
		workloadAccess{kube: s.conn.kube, reg: s.reg, cluster: s.key, gate: r.gate}.ensureNone(ctx, s.written)
		s.config = argocd.KubeconfigConfig(s.conn.creds)
	}
	return nil
}

// render builds the desired outputs. A Flux output that cannot be rendered is that output's failure.
func (r *ClusterReconciler) render(ctx context.Context, s *clusterScope) error {
	if s.reg.Spec.ArgoCD != nil {
		d, err := desiredArgoSecret(s.reg, s.cluster, s.conn.creds.Server, s.config, s.times, s.facts)
		if err != nil {
			return failure(fleetv1.ReasonInvalidSpec, "%s", err)
		}
		s.desired = append(s.desired, d)
	}
	if s.reg.Spec.Flux == nil {
		return nil
	}
	err := func() error {
		namespaces, err := r.fluxNamespaces(ctx, s.reg)
		if err != nil {
			return withFallback(err, fleetv1.ReasonInvalidSpec)
		}
		kc, err := flux.Kubeconfig(s.conn.creds, s.fluxToken)
		if err != nil {
			return failure(fleetv1.ReasonKubeconfigInvalid, "Flux outputs: %s", err)
		}
		secrets, err := desiredFluxSecrets(s.reg, s.cluster, namespaces, kc, s.conn.creds.Server, s.times, s.facts)
		if err != nil {
			return failure(fleetv1.ReasonInvalidSpec, "%s", err)
		}
		s.desired = append(s.desired, secrets...)
		return nil
	}()
	if err != nil {
		s.keepFlux = true
		s.outputErrs = append(s.outputErrs, err)
	}
	return nil
}

// apply writes each desired output on its own: one that fails (a hand-made Secret of the same name, a
// quota, a namespace outside the controller's reach) is reported with its namespace, and the others are
// still written and rotated.
func (r *ClusterReconciler) apply(ctx context.Context, s *clusterScope) error {
	o := owner{registration: s.reg.Name, cluster: s.key}
	for _, d := range s.desired {
		if err := r.applyOutput(ctx, s, o, d); err != nil {
			s.outputErrs = append(s.outputErrs, err)
		}
	}
	return nil
}

func (r *ClusterReconciler) applyOutput(ctx context.Context, s *clusterScope, o owner, d *corev1.Secret) error {
	if !r.Namespaces.SecretsAllowed(d.Namespace) {
		return failure(fleetv1.ReasonNamespaceNotAllowed,
			"fleetbridge may not write Secrets in namespace %s (allowed: %s); add it to --secret-namespaces (Helm value rbac.secretNamespaces)",
			d.Namespace, strings.Join(r.Namespaces.Secrets, ", "))
	}
	// A Secret of this name that is not among this Cluster's (someone else's, or fleetbridge's for
	// another owner) makes the write's create fail, and the writer reports whose it is.
	existing := cachedSecret(s.written, d)
	if d.Labels[owned.LabelOutput] == owned.OutputArgoCD {
		if err := r.checkArgoDuplicates(ctx, s.key, d, existing); err != nil {
			return err
		}
	}
	outcome, err := r.writer.write(ctx, o, existing, d, s.rotated)
	if err != nil {
		return err
	}
	if outcome == writeRepaired {
		s.repaired = append(s.repaired, d.Namespace+"/"+d.Name)
	}
	return nil
}

// prune deletes what this Registration wrote for the Cluster and no longer wants (a Flux namespace
// dropped from the list, an output removed from the spec). Outputs whose rendering failed are kept.
func (r *ClusterReconciler) prune(ctx context.Context, s *clusterScope) error {
	want := map[types.NamespacedName]bool{}
	for _, d := range s.desired {
		want[client.ObjectKeyFromObject(d)] = true
	}
	var errs []error
	for i := range s.written {
		w := &s.written[i]
		if want[client.ObjectKeyFromObject(w)] || (s.keepFlux && w.Labels[owned.LabelOutput] == owned.OutputFlux) {
			continue
		}
		errs = append(errs, r.writer.delete(ctx, w))
	}
	if err := errors.Join(errs...); err != nil {
		s.outputErrs = append(s.outputErrs, failure(fleetv1.ReasonWriteFailed, "%s", err))
	}
	return nil
}

// ownedBy keeps the Secrets one Registration wrote.
func ownedBy(registration string, secrets []corev1.Secret) []corev1.Secret {
	var out []corev1.Secret
	for _, s := range secrets {
		if s.Labels[owned.LabelRegistration] == registration {
			out = append(out, s)
		}
	}
	return out
}

// cachedSecret is the cache's copy of a desired Secret, among those written for the Cluster.
func cachedSecret(written []corev1.Secret, d *corev1.Secret) *corev1.Secret {
	for i := range written {
		if written[i].Namespace == d.Namespace && written[i].Name == d.Name {
			return &written[i]
		}
	}
	return nil
}

func failed(err error, fallback string) clusterResult {
	return clusterResult{Failing: true, Reason: reasonOf(err, fallback), Message: shortError(err)}
}

// withFallback gives an error without a reason of its own the phase's reason.
func withFallback(err error, reason string) error {
	var re *reasonError
	if errors.As(err, &re) {
		return err
	}
	return failure(reasonOf(err, reason), "%s", shortError(err))
}
