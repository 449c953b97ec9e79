package registrar

import (
	"context"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/flux"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// tokenSource owns the lifecycle of the ServiceAccount tokens fleetbridge mints. Its memory is the only
// record of each Registration and Cluster's current token: the outputs carrying a token can be edited
// by Argo CD admins and Flux tenants, so a token read from one is only a candidate. After a restart a
// candidate is kept once the workload API server confirms, with a TokenReview, that it authenticates as
// the expected ServiceAccount; its timing then comes from its verified claims. Anything unconfirmed is
// replaced by a new token, and drift in an output is repaired from memory without minting.
type tokenSource struct {
	now func() time.Time

	mu     sync.Mutex
	tokens map[tokenKey]currentToken
	// pending are tokens minted ahead of their renewal window (premintLead) and not written yet.
	pending map[tokenKey]pendingToken
}

// pendingToken is a token minted ahead of the window that writes it.
type pendingToken struct {
	currentToken
	mintedAt time.Time
}

type tokenKey struct {
	registration string
	cluster      types.NamespacedName
}

func newTokenSource(now func() time.Time) *tokenSource {
	return &tokenSource{now: now, tokens: map[tokenKey]currentToken{}, pending: map[tokenKey]pendingToken{}}
}

// annotationTolerance is how far the timing annotations of an output may be from a confirmed token's own
// claims and still be kept. Keeping them spares a rewrite of every output after a restart (the
// controller's clock stamped them, the server's the claims); a larger gap means they were edited.
const annotationTolerance = 2 * time.Minute

// token returns the token the outputs of one Registration and Cluster carry, minting one when there is
// none, it expired, its renewal window came, or the ServiceAccount was recreated; rotated says it
// replaces the one the outputs carried. A lead before the renewal window it mints the next token and
// keeps it back, and at the window it returns that one, so the window's writes wait for no TokenRequest.
func (s *tokenSource) token(ctx context.Context, access workloadAccess, saUID types.UID, written []corev1.Secret, seed string) (tok currentToken, rotated bool, err error) {
	key := tokenKey{access.reg.Name, access.cluster}
	s.mu.Lock()
	cur, known := s.tokens[key]
	pend, hasPending := s.pending[key]
	s.mu.Unlock()
	var curPtr *currentToken
	if known {
		curPtr = &cur
	} else if confirmed, ok := s.confirmed(ctx, access, saUID, written); ok {
		curPtr = &confirmed
	}
	now := s.now()
	ttl := tokenTTL(access.reg)
	need, why := tokenDecision(curPtr, saUID, ttl, now, seed)
	switch {
	case need && why == "renewal due" && hasPending && pend.usable(saUID, ttl, now, seed):
		log.FromContext(ctx).V(1).Info("renewal window: writing the token minted ahead of it", "registration", access.reg.Name, "expiresAt", pend.Times.ExpiresAt)
		rotated, curPtr = true, &pend.currentToken
	case need:
		minted, err := access.mint(ctx, now)
		if err != nil {
			return currentToken{}, false, err
		}
		log.FromContext(ctx).Info("minted ServiceAccount token", "registration", access.reg.Name, "why", why, "expiresAt", minted.Times.ExpiresAt)
		tokensMinted.WithLabelValues(access.reg.Name).Inc()
		rotated, curPtr = curPtr != nil || len(written) > 0, &minted
	case !hasPending && !now.Before(s.premintAt(*curPtr, seed)):
		minted, err := access.mint(ctx, now)
		if err != nil {
			// The window mints again if this fails; the current token is still good.
			log.FromContext(ctx).Info("could not mint the next token ahead of its renewal window; the window retries", "registration", access.reg.Name, "error", shortError(err))
			break
		}
		log.FromContext(ctx).V(1).Info("minted the next ServiceAccount token ahead of its renewal window", "registration", access.reg.Name,
			"window", renewalWindow(curPtr.Times, seed), "expiresAt", minted.Times.ExpiresAt)
		tokensMinted.WithLabelValues(access.reg.Name).Inc()
		s.mu.Lock()
		s.pending[key] = pendingToken{currentToken: minted, mintedAt: now}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.tokens[key] = *curPtr
	if need {
		delete(s.pending, key)
	}
	s.mu.Unlock()
	return *curPtr, rotated, nil
}

// premintAt is when the token after cur is minted: a lead before cur's renewal window.
func (s *tokenSource) premintAt(cur currentToken, seed string) time.Time {
	return renewalWindow(cur.Times, seed).Add(-premintLead(cur.Times.ExpiresAt.Sub(cur.Times.IssuedAt)))
}

// usable says a token minted ahead can still be written: the ServiceAccount is the one it was minted
// for, the TTL is the one asked for, and it is not due for renewal itself.
func (p pendingToken) usable(saUID types.UID, ttl time.Duration, now time.Time, seed string) bool {
	if saUID != "" && tokenServiceAccountUID(p.Token) != string(saUID) {
		return false
	}
	need, _ := tokenDecision(&p.currentToken, saUID, ttl, now, seed)
	return !need
}

// writesPending says a token minted ahead is waiting for its window, which has come: the reconcile at
// the window only writes, and needs no workload API server (ClusterReconciler.register).
func (s *tokenSource) writesPending(registration string, cluster types.NamespacedName, seed string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, known := s.tokens[tokenKey{registration, cluster}]
	pend, hasPending := s.pending[tokenKey{registration, cluster}]
	now := s.now()
	return known && hasPending && !now.Before(renewalWindow(cur.Times, seed)) && now.Sub(pend.mintedAt) < 2*premintLead(cur.Times.ExpiresAt.Sub(cur.Times.IssuedAt))+time.Minute
}

// nextDue is when the Cluster must be reconciled next for this token: a lead before its window to mint
// the next token, then at the window to write it. The zero time: nothing is known.
func (s *tokenSource) nextDue(registration string, cluster types.NamespacedName, seed string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, known := s.tokens[tokenKey{registration, cluster}]
	if !known {
		return time.Time{}
	}
	window := renewalWindow(cur.Times, seed)
	premint := s.premintAt(cur, seed)
	if _, hasPending := s.pending[tokenKey{registration, cluster}]; hasPending || !s.now().Before(premint) {
		// Minted ahead, or the lead passed without it (a failed mint waits for the window).
		return window
	}
	return premint
}

// confirmed finds, among the tokens the outputs carry, one the workload API server authenticates as the
// Registration's ServiceAccount (with its current UID). The Argo CD output is asked first.
func (s *tokenSource) confirmed(ctx context.Context, access workloadAccess, saUID types.UID, written []corev1.Secret) (currentToken, bool) {
	ns, name := serviceAccount(access.reg)
	tried := map[string]bool{}
	for _, cand := range tokenCandidates(access.reg.Name, written) {
		if tried[cand.Token] {
			continue
		}
		tried[cand.Token] = true
		review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: cand.Token}}
		resp, err := access.kube.AuthenticationV1().TokenReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			log.FromContext(ctx).Info("could not confirm a token found in an output; minting a new one", "registration", access.reg.Name, "error", apiReason(err))
			return currentToken{}, false
		}
		st := resp.Status
		if !st.Authenticated || st.User.Username != "system:serviceaccount:"+ns+":"+name || (saUID != "" && types.UID(st.User.UID) != saUID) {
			continue
		}
		times, ok := claimTimes(cand.Token)
		if !ok {
			continue
		}
		if closeTo(cand.Times.IssuedAt, times.IssuedAt) && closeTo(cand.Times.ExpiresAt, times.ExpiresAt) {
			times = cand.Times
		}
		return currentToken{Token: cand.Token, Times: times}, true
	}
	return currentToken{}, false
}

func closeTo(a, b time.Time) bool {
	d := a.Sub(b)
	return !a.IsZero() && d < annotationTolerance && d > -annotationTolerance
}

// claimTimes reads iat and exp of a token whose signature the API server has checked.
func claimTimes(token string) (tokenTimes, bool) {
	var claims struct {
		IssuedAt  int64 `json:"iat"`
		ExpiresAt int64 `json:"exp"`
	}
	if !decodeClaims(token, &claims) || claims.IssuedAt == 0 || claims.ExpiresAt <= claims.IssuedAt {
		return tokenTimes{}, false
	}
	return tokenTimes{IssuedAt: time.Unix(claims.IssuedAt, 0), ExpiresAt: time.Unix(claims.ExpiresAt, 0)}, true
}

// tokenCandidates are the tokens a Registration's outputs for a Cluster carry, the Argo CD output first,
// with the timing their annotations claim. None of it is trusted until confirmed.
func tokenCandidates(registration string, written []corev1.Secret) []currentToken {
	var argo, others []currentToken
	for _, s := range written {
		if s.Labels[owned.LabelRegistration] != registration {
			continue
		}
		rec, _ := owned.RecordOf(s.Labels, s.Annotations)
		times := tokenTimes{IssuedAt: rec.TokenIssuedAt, ExpiresAt: rec.TokenExpiresAt}
		switch s.Labels[owned.LabelOutput] {
		case owned.OutputArgoCD:
			if cfg, err := argocd.ParseConfig(s.Data[argocd.KeyConfig]); err == nil && cfg.BearerToken != "" {
				argo = append(argo, currentToken{Token: cfg.BearerToken, Times: times})
			}
		case owned.OutputFlux:
			if tok := flux.Token(s.Data[flux.KubeconfigKey]); tok != "" {
				others = append(others, currentToken{Token: tok, Times: times})
			}
		}
	}
	return append(argo, others...)
}

// forget drops the token of one Registration and Cluster (its ServiceAccount was removed).
func (s *tokenSource) forget(registration string, cluster types.NamespacedName) {
	s.mu.Lock()
	delete(s.tokens, tokenKey{registration, cluster})
	delete(s.pending, tokenKey{registration, cluster})
	s.mu.Unlock()
}
