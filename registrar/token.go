package registrar

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// currentToken is the token fleetbridge last wrote for one Registration and Cluster.
type currentToken struct {
	Token string
	Times tokenTimes
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
	case !now.Before(renewalWindow(cur.Times, seed)):
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
