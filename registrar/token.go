package registrar

import (
	"encoding/base64"
	"encoding/json"
	"hash/fnv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// currentToken is the token fleetbridge last wrote for one Registration and Cluster.
type currentToken struct {
	Token string
	Times tokenTimes
}

// renewAt is when a token is renewed: somewhere between 15% and 85% of its lifetime, half of it on
// average. The point comes from a hash of seed (renewalSeed), so it is stable across reconciles and
// restarts (no churn) yet spreads a fleet whose tokens were minted together (a cold start, or a TTL
// change) over 70% of the lifetime: with a 1h TTL, 1,000 clusters renew about 24 a minute and the
// busiest sliding minute stays under 5% of the fleet (TestRenewalSpread). Renewing at "about two
// thirds" with a third of the lifetime as jitter put 7-8% of such a fleet in its busiest minute, and no
// window that wide fits around two thirds without renewing within minutes of expiry; 85% still leaves
// 15% of the lifetime (9 minutes of a 1h token, 1.5 minutes at the 10m floor) for a failed renewal to
// be retried, and kubelet refreshes projected tokens at 80%. Later renewals drift further apart because
// each cluster keeps its own offset.
func renewAt(t tokenTimes, seed string) time.Time {
	life := t.ExpiresAt.Sub(t.IssuedAt)
	if life <= 0 {
		return t.IssuedAt
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(seed))
	var jitter time.Duration
	if window := uint64(life * 7 / 10); window > 0 {
		jitter = time.Duration(h.Sum64() % window)
	}
	return t.IssuedAt.Add(life * 85 / 100).Add(-jitter)
}

// renewalSeed is the seed of renewAt for one Cluster and Registration.
func renewalSeed(cluster types.UID, registration string) string {
	return string(cluster) + "/" + registration
}

// tokenDecision says whether a new token must be minted, and why (for logs; never the token).
func tokenDecision(cur *currentToken, serviceAccountUID types.UID, ttl time.Duration, now time.Time, seed string) (bool, string) {
	switch {
	case cur == nil || cur.Token == "" || cur.Times.ExpiresAt.IsZero():
		return true, "no token yet"
	case !now.Before(cur.Times.ExpiresAt):
		return true, "token expired"
	case serviceAccountUID != "" && tokenServiceAccountUID(cur.Token) != string(serviceAccountUID):
		return true, "ServiceAccount was recreated"
	case !now.Before(renewAt(cur.Times, seed)):
		return true, "renewal due"
	case float64(ttl) < 0.9*float64(cur.Times.ExpiresAt.Sub(cur.Times.IssuedAt)):
		// A shorter TTL was asked for; a longer one waits for the regular renewal, so an API server that
		// caps token lifetimes cannot cause a renewal loop.
		return true, "tokenTTL shortened"
	}
	return false, ""
}

// tokenLifetime is exp - iat of a JWT, or 0 when the claims are missing.
func tokenLifetime(token string) time.Duration {
	t, ok := claimTimes(token)
	if !ok {
		return 0
	}
	return t.ExpiresAt.Sub(t.IssuedAt)
}

func decodeClaims(token string, into any) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	return json.Unmarshal(payload, into) == nil
}

// tokenServiceAccountUID reads the ServiceAccount UID claim of a bound ServiceAccount token. The token is
// one fleetbridge minted, so its signature is not checked here: a mismatch only triggers a new mint.
func tokenServiceAccountUID(token string) string {
	var claims struct {
		Kubernetes struct {
			ServiceAccount struct {
				UID string `json:"uid"`
			} `json:"serviceaccount"`
		} `json:"kubernetes.io"`
	}
	if !decodeClaims(token, &claims) {
		return ""
	}
	return claims.Kubernetes.ServiceAccount.UID
}
