package workloadhttp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
)

// DeniedAddressError is returned when a dial targets a denied address.
type DeniedAddressError struct {
	Address string
}

func (e *DeniedAddressError) Error() string {
	return fmt.Sprintf("connecting to %s is not allowed (denied CIDR)", e.Address)
}

// DialContext returns a dial function (for rest.Config.Dial) that resolves the host itself, skips every
// address in denied (an IPv4-mapped IPv6 address counts as its IPv4 address), and dials the allowed
// addresses in turn with a net.Dialer{Timeout: timeout, KeepAlive: 30s}; when every address is denied it
// returns a *DeniedAddressError. Dialing the address it checked, rather than the name, leaves DNS no
// second answer to give. As in kubeconfig.Policy, a nil denied means kubeconfig.DefaultDeniedCIDRs and
// an empty non-nil one denies nothing. The timeout also bounds the name's resolution.
//
// Behind a proxy (proxy-url, or HTTPS_PROXY) the transport dials the proxy, so the proxy's address is
// the one checked; the server's then is only checked by kubeconfig's Check, on IP literals.
func DialContext(denied []netip.Prefix, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return newGuardedDialer(denied, timeout).DialContext
}

// guardedDialer is the dialer DialContext returns the method of.
type guardedDialer struct {
	denied  []netip.Prefix
	timeout time.Duration
	dialer  *net.Dialer
}

func newGuardedDialer(denied []netip.Prefix, timeout time.Duration) *guardedDialer {
	if denied == nil {
		denied = kubeconfig.DefaultDeniedCIDRs
	}
	return &guardedDialer{
		denied:  slices.Clone(denied),
		timeout: timeout,
		dialer:  &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second},
	}
}

func (d *guardedDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ipNetwork, ok := map[string]string{"tcp": "ip", "tcp4": "ip4", "tcp6": "ip6"}[network]
	if !ok {
		return nil, fmt.Errorf("dialing %s is not supported: workload API servers are reached over TCP", network)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if d.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	ips, err := resolve(ctx, ipNetwork, host)
	if err != nil {
		return nil, err
	}
	var refused *DeniedAddressError
	var dialErr error
	for _, ip := range ips {
		if isDenied(ip, d.denied) {
			if refused == nil {
				refused = &DeniedAddressError{Address: ip.Unmap().String()}
			}
			continue
		}
		conn, err := d.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		dialErr = err
	}
	if dialErr != nil {
		return nil, dialErr
	}
	if refused != nil {
		return nil, refused
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// resolve returns host's addresses: host itself when it is an IP literal (with or without a zone).
func resolve(ctx context.Context, ipNetwork, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, ipNetwork, host)
}

// isDenied reports whether ip is in a denied prefix. An IPv4-mapped IPv6 address (::ffff:169.254.169.254)
// reaches the IPv4 address, so it is compared as one, and so is a mapped prefix; a zone does not change
// the address.
func isDenied(ip netip.Addr, denied []netip.Prefix) bool {
	ip = ip.Unmap().WithZone("")
	for _, prefix := range denied {
		if prefix.Addr().Is4In6() && prefix.Bits() >= 96 {
			prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
		}
		if prefix.Contains(ip) {
			return true
		}
	}
	return false
}
