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
}

type tokenKey struct {
	registration string
	cluster      types.NamespacedName
}

func newTokenSource(now func() time.Time) *tokenSource {
	return &tokenSource{now: now, tokens: map[tokenKey]currentToken{}}
}

// annotationTolerance is how far the timing annotations of an output may be from a confirmed token's own
// claims and still be kept. Keeping them spares a rewrite of every output after a restart (the
// controller's clock stamped them, the server's the claims); a larger gap means they were edited.
const annotationTolerance = 2 * time.Minute

// token returns the token the outputs of one Registration and Cluster carry, minting one when there is
// none, it expired, its renewal point passed, or the ServiceAccount was recreated.
func (s *tokenSource) token(ctx context.Context, access workloadAccess, saUID types.UID, written []corev1.Secret, seed string) (currentToken, error) {
	key := tokenKey{access.reg.Name, access.cluster}
	s.mu.Lock()
	cur, known := s.tokens[key]
	s.mu.Unlock()
	var curPtr *currentToken
	if known {
		curPtr = &cur
	} else if confirmed, ok := s.confirmed(ctx, access, saUID, written); ok {
		curPtr = &confirmed
	}
	if need, why := tokenDecision(curPtr, saUID, tokenTTL(access.reg), s.now(), seed); need {
		minted, err := access.mint(ctx, s.now())
		if err != nil {
			return currentToken{}, err
		}
		log.FromContext(ctx).Info("minted ServiceAccount token", "registration", access.reg.Name, "why", why, "expiresAt", minted.Times.ExpiresAt)
		tokensMinted.WithLabelValues(access.reg.Name).Inc()
		curPtr = &minted
	}
	s.mu.Lock()
	s.tokens[key] = *curPtr
	s.mu.Unlock()
	return *curPtr, nil
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
	s.mu.Unlock()
}
