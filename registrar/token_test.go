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
	due := renewalWindow(times, "seed")
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

// A renewal is a window boundary between the earliest and the latest renewal point of the token, and
// stable for one seed.
func TestRenewalWindow(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 7, 13, 0, time.UTC)
	for _, tc := range []struct {
		ttl, period, lead time.Duration
	}{
		{24 * time.Hour, time.Hour, 5 * time.Minute},
		{time.Hour, 40 * time.Minute, 5 * time.Minute},
		{10 * time.Minute, 6 * time.Minute, 45 * time.Second},
		{7 * 24 * time.Hour, time.Hour, 5 * time.Minute},
	} {
		t.Run(tc.ttl.String(), func(t *testing.T) {
			if p, l := windowPeriod(tc.ttl), premintLead(tc.ttl); p != tc.period || l != tc.lead {
				t.Fatalf("period %s, lead %s; want %s, %s", p, l, tc.period, tc.lead)
			}
			times := tokenTimes{IssuedAt: issued, ExpiresAt: issued.Add(tc.ttl)}
			earliest, latest := issued.Add(max(tc.ttl/10, 2*tc.lead)), issued.Add(tc.ttl*85/100)
			windows := map[time.Time]bool{}
			for i := 0; i < 1000; i++ {
				at := renewalWindow(times, fmt.Sprintf("cluster-%d", i))
				if at != renewalWindow(times, fmt.Sprintf("cluster-%d", i)) {
					t.Fatal("renewalWindow is not stable")
				}
				if !at.After(earliest) || at.After(latest) {
					t.Fatalf("renewal at %s, want within (%s, %s]", at.Sub(issued), earliest.Sub(issued), latest.Sub(issued))
				}
				if !at.Truncate(tc.period).Equal(at) {
					t.Fatalf("renewal at %s is not a window boundary", at)
				}
				windows[at] = true
			}
			if want := int((latest.Sub(earliest) + tc.period - 1) / tc.period); len(windows) < want-1 {
				t.Fatalf("a fleet minted together renews in %d windows, want about %d", len(windows), want)
			}
		})
	}
}

func typesUID(s string) types.UID { return types.UID(s) }
