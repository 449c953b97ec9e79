package kubeconfig

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Policy is what the platform team allows of a workload kubeconfig.
type Policy struct {
	// AllowedExecCommands are the exec plugin commands allowed. An entry matches a command equal to it, or
	// whose base name (path.Base) equals it: "kubelogin" allows "/usr/local/bin/kubelogin". Empty allows none.
	AllowedExecCommands []string
	// AllowInsecure allows insecure-skip-tls-verify and http:// servers.
	AllowInsecure bool
	// DeniedCIDRs are the server addresses refused; nil means DefaultDeniedCIDRs, and an empty non-nil
	// slice denies nothing.
	DeniedCIDRs []netip.Prefix
}

// DefaultDeniedCIDRs are the link-local ranges, where clouds serve instance metadata (and the node's
// cloud credentials) at 169.254.169.254. Loopback stays allowed: a workload API server on the management
// host is a legitimate (test and demo) setup.
var DefaultDeniedCIDRs = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
}

// PolicyError is a refusal by a Policy. Reason is CamelCase, for a status condition; Message says what
// the kubeconfig does and how the platform team allows it, and never quotes credential material.
type PolicyError struct {
	Reason, Message string
}

func (e *PolicyError) Error() string { return e.Message }

// The reasons of a PolicyError.
const (
	ReasonExecNotAllowed    = "ExecNotAllowed"
	ReasonInsecureTransport = "InsecureTransport"
	ReasonDeniedAddress     = "DeniedAddress"
)

// Check refuses credentials the policy does not allow: an exec plugin whose command is not allowed, TLS
// verification turned off, or a server (or proxy) whose host is an IP literal in a denied CIDR.
// Hostnames are not resolved here; the dialer checks the addresses they resolve to.
func (c *Credentials) Check(p Policy) error {
	if c.Exec != nil && !p.execAllowed(c.Exec.Command) {
		return &PolicyError{Reason: ReasonExecNotAllowed, Message: fmt.Sprintf(
			"kubeconfig exec plugin %q is not allowed; the platform team allows a command with the --allowed-exec-commands flag or the Registration's spec.credentials.allowedExecCommands",
			bounded(path.Base(c.Exec.Command), maxQuotedName))}
	}
	if !p.AllowInsecure {
		if c.Insecure {
			return &PolicyError{Reason: ReasonInsecureTransport, Message: "kubeconfig turns TLS verification off (insecure-skip-tls-verify); the platform team allows it with the Registration's spec.credentials.allowInsecure"}
		}
		if isHTTP(c.Server) {
			return &PolicyError{Reason: ReasonInsecureTransport, Message: "kubeconfig server is http://, without TLS; the platform team allows it with the Registration's spec.credentials.allowInsecure"}
		}
	}
	denied := p.DeniedCIDRs
	if denied == nil {
		denied = DefaultDeniedCIDRs
	}
	for _, target := range []struct{ what, raw string }{{"server", c.Server}, {"proxy-url", c.ProxyURL}} {
		if target.raw == "" {
			continue
		}
		u, err := url.Parse(target.raw)
		if err != nil {
			// Parse accepts only parsable URLs; credentials built otherwise fail closed.
			return &PolicyError{Reason: ReasonDeniedAddress, Message: fmt.Sprintf("kubeconfig %s is not a URL", target.what)}
		}
		addr, ok := ipLiteral(u.Hostname())
		if !ok {
			continue
		}
		if prefix, ok := deniedBy(addr, denied); ok {
			return &PolicyError{Reason: ReasonDeniedAddress, Message: fmt.Sprintf(
				"kubeconfig %s address %s is in a denied range (%s)", target.what, addr, prefix)}
		}
	}
	return nil
}

// TransportInsecure reports whether TLS verification is off for these credentials
// (insecure-skip-tls-verify, or an http:// server).
func (c *Credentials) TransportInsecure() bool {
	return c.Insecure || isHTTP(c.Server)
}

// ParseCIDRs parses a comma-separated flag value of CIDRs. "" is DefaultDeniedCIDRs (a copy), and "none"
// is an empty non-nil slice: nothing denied.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return slices.Clone(DefaultDeniedCIDRs), nil
	case strings.EqualFold(s, "none"):
		return []netip.Prefix{}, nil
	}
	var out []netip.Prefix
	for field := range strings.SplitSeq(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			return nil, fmt.Errorf("CIDR list %q has an empty entry", s)
		}
		prefix, err := netip.ParsePrefix(field)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (one address is a /32 or /128; \"none\" alone denies nothing)", field)
		}
		out = append(out, unmapPrefix(prefix).Masked())
	}
	return out, nil
}

func (p Policy) execAllowed(command string) bool {
	base := path.Base(command)
	for _, allowed := range p.AllowedExecCommands {
		if allowed != "" && (allowed == command || allowed == base) {
			return true
		}
	}
	return false
}

func isHTTP(server string) bool {
	return len(server) >= len("http://") && strings.EqualFold(server[:len("http://")], "http://")
}

// deniedBy returns the denied prefix holding addr. An IPv4-mapped IPv6 address (::ffff:169.254.169.254)
// reaches the IPv4 address, so it is compared as one; a zone (fe80::1%eth0) does not change the address.
func deniedBy(addr netip.Addr, denied []netip.Prefix) (netip.Prefix, bool) {
	addr = addr.Unmap().WithZone("")
	for _, prefix := range denied {
		if unmapPrefix(prefix).Contains(addr) {
			return prefix, true
		}
	}
	return netip.Prefix{}, false
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:169.254.0.0/112) into its IPv4 prefix, so it
// holds the unmapped addresses deniedBy compares.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4In6() || p.Bits() < 96 {
		return p
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
}

// ipLiteral reads a URL host as an IP address: IPv4, IPv6 (url.Hostname drops the brackets) with or
// without a zone, and the numeric IPv4 forms C resolvers accept (2852039166, 0xa9fea9fe, 0251.0376.0251.0376,
// 169.254.43518), which a consumer of the kubeconfig linked against libc connects to as addresses.
func ipLiteral(host string) (netip.Addr, bool) {
	if addr, err := netip.ParseAddr(host); err == nil {
		return addr, true
	}
	return inetAton(strings.TrimSuffix(host, "."))
}

// inetAton parses the IPv4 forms of inet_aton(3): one to four dot-separated numbers, each decimal, octal
// (leading 0) or hex (leading 0x), the last filling the bytes that remain.
func inetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var value uint64
	for i, part := range parts {
		base := 10
		switch {
		case len(part) > 2 && (part[:2] == "0x" || part[:2] == "0X"):
			part, base = part[2:], 16
		case len(part) > 1 && part[0] == '0':
			part, base = part[1:], 8
		}
		if part == "" || part[0] == '+' || part[0] == '-' {
			return netip.Addr{}, false
		}
		n, err := strconv.ParseUint(part, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 0xff {
				return netip.Addr{}, false
			}
			value |= n << (8 * (3 - i))
			continue
		}
		if remaining := uint(4 - i); n >= 1<<(8*remaining) {
			return netip.Addr{}, false
		}
		value |= n
	}
	return netip.AddrFrom4([4]byte{byte(value >> 24), byte(value >> 16), byte(value >> 8), byte(value)}), true
}

// bounded cuts s to at most n bytes, marking the cut.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
