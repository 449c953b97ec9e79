package registrar

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func fakeJWT(uid string, iat, exp int64) string {
	payload := fmt.Sprintf(`{"iat":%d,"exp":%d,"kubernetes.io":{"serviceaccount":{"uid":%q}}}`, iat, exp, uid)
	return "e30." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
}

func TestTokenDecision(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	times := tokenTimes{IssuedAt: issued, ExpiresAt: issued.Add(24 * time.Hour)}
	tok := &currentToken{Token: fakeJWT("uid-1", issued.Unix(), issued.Add(24*time.Hour).Unix()), Times: times}
	due := renewAt(times, "seed")
	cases := []struct {
		name string
		cur  *currentToken
		uid  string
		ttl  time.Duration
		now  time.Time
		want bool
		why  string
	}{
		{"no token", nil, "uid-1", 24 * time.Hour, issued, true, "no token yet"},
		{"fresh", tok, "uid-1", 24 * time.Hour, issued.Add(time.Hour), false, ""},
		{"just before renewal", tok, "uid-1", 24 * time.Hour, due.Add(-time.Second), false, ""},
		{"renewal due", tok, "uid-1", 24 * time.Hour, due, true, "renewal due"},
		{"expired while the controller was down", tok, "uid-1", 24 * time.Hour, issued.Add(25 * time.Hour), true, "token expired"},
		{"ServiceAccount recreated", tok, "uid-2", 24 * time.Hour, issued.Add(time.Hour), true, "ServiceAccount was recreated"},
		{"TTL shortened", tok, "uid-1", time.Hour, issued.Add(time.Minute), true, "tokenTTL shortened"},
		{"TTL lengthened waits", tok, "uid-1", 48 * time.Hour, issued.Add(time.Minute), false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, why := tokenDecision(tc.cur, typesUID(tc.uid), tc.ttl, tc.now, "seed")
			if got != tc.want || why != tc.why {
				t.Fatalf("got %v %q, want %v %q", got, why, tc.want, tc.why)
			}
		})
	}
	if life := tokenLifetime(tok.Token); life != 24*time.Hour {
		t.Fatalf("tokenLifetime = %s", life)
	}
}

// Renewal lands between 15% and 85% of the lifetime, is stable for one seed, and spreads a fleet.
func TestRenewAtJitter(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	times := tokenTimes{IssuedAt: issued, ExpiresAt: issued.Add(time.Hour)}
	minutes := map[int]int{}
	for i := 0; i < 1000; i++ {
		at := renewAt(times, fmt.Sprintf("cluster-%d", i))
		if at != renewAt(times, fmt.Sprintf("cluster-%d", i)) {
			t.Fatal("renewAt is not stable")
		}
		frac := float64(at.Sub(issued)) / float64(time.Hour)
		if frac < 0.15 || frac > 0.85 {
			t.Fatalf("renewal at %.3f of the lifetime", frac)
		}
		minutes[int(at.Sub(issued)/time.Minute)]++
	}
	for m, n := range minutes {
		if n > 50 { // 42 one-minute windows: about 24 each
			t.Fatalf("%d of 1000 clusters renew in minute %d", n, m)
		}
	}
}

func typesUID(s string) types.UID { return types.UID(s) }
