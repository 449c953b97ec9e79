package workloadhttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// TestIsDenied checks the pure address check; no address here is dialed.
func TestIsDenied(t *testing.T) {
	cases := []struct {
		addr   string
		denied []netip.Prefix
		want   bool
	}{
		{"169.254.169.254", kubeconfig.DefaultDeniedCIDRs, true},
		{"::ffff:169.254.169.254", kubeconfig.DefaultDeniedCIDRs, true},
		{"fe80::1", kubeconfig.DefaultDeniedCIDRs, true},
		{"fe80::1%eth0", kubeconfig.DefaultDeniedCIDRs, true},
		{"127.0.0.1", kubeconfig.DefaultDeniedCIDRs, false},
		{"::1", kubeconfig.DefaultDeniedCIDRs, false},
		{"10.0.0.1", kubeconfig.DefaultDeniedCIDRs, false},
		{"169.255.0.1", kubeconfig.DefaultDeniedCIDRs, false},
		{"127.0.0.1", loopback, true},
		{"::ffff:127.0.0.1", loopback, true},
		{"10.0.0.1", []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}, true},
		{"169.254.169.254", []netip.Prefix{}, false},
	}
	for _, tc := range cases {
		if got := isDenied(netip.MustParseAddr(tc.addr), tc.denied); got != tc.want {
			t.Errorf("isDenied(%s, %v) = %v, want %v", tc.addr, tc.denied, got, tc.want)
		}
	}
}

func TestDialContextNilDeniesTheDefault(t *testing.T) {
	if got := newGuardedDialer(nil, time.Second).denied; !slices.Equal(got, kubeconfig.DefaultDeniedCIDRs) {
		t.Fatalf("a nil denied list denies %v, want kubeconfig.DefaultDeniedCIDRs", got)
	}
	if got := newGuardedDialer([]netip.Prefix{}, time.Second).denied; len(got) != 0 {
		t.Fatalf("an empty denied list denies %v", got)
	}
	d := newGuardedDialer(nil, 0)
	if d.dialer.KeepAlive != 30*time.Second {
		t.Fatalf("keep-alive is %s", d.dialer.KeepAlive)
	}
}

// countingListener is a loopback listener that counts the connections it accepts.
func countingListener(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = &atomic.Int64{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), accepted
}

func TestDialContextRefusesDeniedAddresses(t *testing.T) {
	addr, accepted := countingListener(t)
	_, port, _ := net.SplitHostPort(addr)
	dial := DialContext(loopback, time.Second)
	for _, target := range []struct{ network, addr, refused string }{
		{"tcp", addr, "127.0.0.1"},
		{"tcp4", addr, "127.0.0.1"},
		{"tcp", net.JoinHostPort("::ffff:127.0.0.1", port), "127.0.0.1"},
		{"tcp", net.JoinHostPort("localhost", port), ""}, // resolved: 127.0.0.1 or ::1
	} {
		conn, err := dial(context.Background(), target.network, target.addr)
		if err == nil {
			conn.Close()
			t.Fatalf("dialing %s %s connected", target.network, target.addr)
		}
		var denied *DeniedAddressError
		if !errors.As(err, &denied) {
			t.Fatalf("dialing %s: %v, want a *DeniedAddressError", target.addr, err)
		}
		if target.refused != "" && denied.Address != target.refused {
			t.Fatalf("dialing %s refused %q, want %q", target.addr, denied.Address, target.refused)
		}
		if want := "connecting to " + denied.Address + " is not allowed (denied CIDR)"; err.Error() != want {
			t.Fatalf("error %q, want %q", err, want)
		}
	}
	// An accepted connection is counted at once; give a stray one the time to show.
	time.Sleep(100 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the denied listener accepted %d connections", n)
	}
}

func TestDialContextConnectsToAllowedAddresses(t *testing.T) {
	addr, accepted := countingListener(t)
	_, port, _ := net.SplitHostPort(addr)
	// 127.0.0.2/32 is denied: loopback's other addresses stay allowed.
	dial := DialContext([]netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, time.Second)
	// localhost may resolve to ::1 first, where nothing listens: the dialer goes on to 127.0.0.1.
	for i, target := range []string{addr, net.JoinHostPort("localhost", port)} {
		conn, err := dial(context.Background(), "tcp", target)
		if err != nil {
			t.Fatalf("dialing %s: %v", target, err)
		}
		conn.Close()
		deadline := time.Now().Add(5 * time.Second)
		for accepted.Load() != int64(i+1) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if accepted.Load() != int64(i+1) {
			t.Fatalf("dialing %s: the listener accepted %d connections, want %d", target, accepted.Load(), i+1)
		}
	}
}

func TestDialContextIsTCPOnly(t *testing.T) {
	for _, network := range []string{"udp", "unix", "ip4:icmp"} {
		if conn, err := DialContext([]netip.Prefix{}, time.Second)(context.Background(), network, "127.0.0.1:53"); err == nil {
			conn.Close()
			t.Fatalf("dialing %s succeeded", network)
		}
	}
}

func TestDialContextHonoursTheContext(t *testing.T) {
	addr, _ := countingListener(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if conn, err := DialContext([]netip.Prefix{}, time.Second)(ctx, "tcp", addr); err == nil {
		conn.Close()
		t.Fatal("a dial with a cancelled context connected")
	}
}

// TestDialContextThroughClientGo shows how client-go surfaces a refused dial: discovery's ServerVersion
// fails with an error errors.As finds the *DeniedAddressError in, and the server sees no request.
func TestDialContextThroughClientGo(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Write([]byte(`{"gitVersion":"v1.36.0"}`))
	}))
	defer srv.Close()

	cases := []struct {
		name   string
		denied []netip.Prefix
		refuse bool
	}{
		{"allowed", []netip.Prefix{}, false},
		{"denied", loopback, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := requests.Load()
			cfg := &rest.Config{Host: srv.URL, Timeout: 10 * time.Second, Dial: DialContext(tc.denied, time.Second),
				WrapTransport: func(rt http.RoundTripper) http.RoundTripper { return LimitResponses(rt, DefaultMaxResponseBytes) }}
			client, err := discovery.NewDiscoveryClientForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			info, err := client.ServerVersion()
			if !tc.refuse {
				if err != nil || info.GitVersion != "v1.36.0" {
					t.Fatalf("ServerVersion = %v, %v", info, err)
				}
				return
			}
			var denied *DeniedAddressError
			if !errors.As(err, &denied) || denied.Address != "127.0.0.1" {
				t.Fatalf("ServerVersion error %v, want a *DeniedAddressError for 127.0.0.1", err)
			}
			t.Logf("client-go's error: %q", err)
			if n := requests.Load() - before; n != 0 {
				t.Fatalf("the server got %d requests", n)
			}
		})
	}
}
