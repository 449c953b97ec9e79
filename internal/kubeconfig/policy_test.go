package kubeconfig

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	token := func(server string) *Credentials { return &Credentials{Server: server, BearerToken: secretToken} }
	exec := func(command string) *Credentials {
		return &Credentials{Server: "https://10.0.0.1:6443", Exec: &ExecProvider{Command: command, Env: map[string]string{"SECRET": secretToken}}}
	}
	insecure := token("https://10.0.0.1:6443")
	insecure.Insecure = true
	proxied := func(proxy string) *Credentials {
		c := token("https://api.example.test:6443")
		c.ProxyURL = proxy
		return c
	}
	kubelogin := Policy{AllowedExecCommands: []string{"kubelogin"}}
	loopbackDenied := Policy{DeniedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

	cases := []struct {
		name   string
		creds  *Credentials
		policy Policy
		reason string   // "" means allowed
		says   []string // what the message must contain
	}{
		{"token over https to a private address", token("https://10.0.0.1:6443"), Policy{}, "", nil},
		{"hostname server is not resolved", token("https://metadata.example.test"), Policy{}, "", nil},
		{"loopback stays allowed by default", token("https://127.0.0.1:6443"), Policy{}, "", nil},
		{"IPv6 loopback stays allowed by default", token("https://[::1]:6443"), Policy{}, "", nil},

		{"exec with an empty allowlist", exec("kubelogin"), Policy{}, ReasonExecNotAllowed,
			[]string{`"kubelogin"`, "--allowed-exec-commands", "spec.credentials.allowedExecCommands"}},
		{"exec allowed by exact name", exec("kubelogin"), kubelogin, "", nil},
		{"exec path allowed by base name", exec("/usr/local/bin/kubelogin"), kubelogin, "", nil},
		{"exec path allowed by exact path", exec("/usr/local/bin/kubelogin"), Policy{AllowedExecCommands: []string{"/usr/local/bin/kubelogin"}}, "", nil},
		{"exec path entry does not allow another directory", exec("/tmp/kubelogin"), Policy{AllowedExecCommands: []string{"/usr/local/bin/kubelogin"}}, ReasonExecNotAllowed, []string{`"kubelogin"`}},
		{"exec message names only the base name", exec("/home/team-a/bin/aws-iam-authenticator"), kubelogin, ReasonExecNotAllowed, []string{`"aws-iam-authenticator"`}},
		{"exec name that only shares a prefix", exec("kubelogin-evil"), kubelogin, ReasonExecNotAllowed, nil},
		{"empty allowlist entry allows nothing", exec("."), Policy{AllowedExecCommands: []string{""}}, ReasonExecNotAllowed, nil},
		{"exec with a long name is quoted bounded", exec(strings.Repeat("x", 10000)), Policy{}, ReasonExecNotAllowed, []string{`..."`}},

		{"insecure-skip-tls-verify", insecure, Policy{}, ReasonInsecureTransport, []string{"insecure-skip-tls-verify", "spec.credentials.allowInsecure"}},
		{"insecure-skip-tls-verify allowed", insecure, Policy{AllowInsecure: true}, "", nil},
		{"http server", token("http://10.0.0.1:8080"), Policy{}, ReasonInsecureTransport, []string{"http://", "spec.credentials.allowInsecure"}},
		{"HTTP server in upper case", token("HTTP://10.0.0.1:8080"), Policy{}, ReasonInsecureTransport, nil},
		{"http server allowed", token("http://10.0.0.1:8080"), Policy{AllowInsecure: true}, "", nil},
		{"http proxy is not an insecure transport", proxied("http://10.0.0.9:3128"), Policy{}, "", nil},

		{"metadata address", token("https://169.254.169.254"), Policy{}, ReasonDeniedAddress, []string{"169.254.169.254", "169.254.0.0/16"}},
		{"metadata address with port", token("https://169.254.169.254:443/latest"), Policy{}, ReasonDeniedAddress, nil},
		{"IPv4-mapped IPv6 metadata address", token("https://[::ffff:169.254.169.254]:6443"), Policy{}, ReasonDeniedAddress, []string{"169.254.169.254"}},
		{"IPv4-mapped IPv6 in hex", token("https://[::ffff:a9fe:a9fe]"), Policy{}, ReasonDeniedAddress, nil},
		{"IPv6 link-local", token("https://[fe80::1]:6443"), Policy{}, ReasonDeniedAddress, []string{"fe80::/10"}},
		{"IPv6 link-local with a zone", token("https://[fe80::1%25eth0]:6443"), Policy{}, ReasonDeniedAddress, nil},
		{"decimal IPv4 form", token("https://2852039166"), Policy{}, ReasonDeniedAddress, []string{"169.254.169.254"}},
		{"hex IPv4 form", token("https://0xA9FEA9FE:443"), Policy{}, ReasonDeniedAddress, nil},
		{"octal IPv4 form", token("https://0251.0376.0251.0376"), Policy{}, ReasonDeniedAddress, nil},
		{"two-part IPv4 form", token("https://169.254.43518"), Policy{}, ReasonDeniedAddress, nil},
		{"trailing dot", token("https://169.254.169.254."), Policy{}, ReasonDeniedAddress, nil},
		{"denied even when insecure is allowed", token("http://169.254.169.254"), Policy{AllowInsecure: true}, ReasonDeniedAddress, nil},
		{"proxy at a denied address", proxied("http://169.254.169.254:3128"), Policy{}, ReasonDeniedAddress, []string{"proxy-url"}},
		{"explicit denied list replaces the default", token("https://169.254.169.254"), loopbackDenied, "", nil},
		{"explicit denied list refuses loopback", token("https://127.0.0.1:6443"), loopbackDenied, ReasonDeniedAddress, []string{"127.0.0.0/8"}},
		{"empty denied list denies nothing", token("https://169.254.169.254"), Policy{DeniedCIDRs: []netip.Prefix{}}, "", nil},
		{"IPv4-mapped denied prefix holds the IPv4 address", token("https://10.1.2.3"),
			Policy{DeniedCIDRs: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}, ReasonDeniedAddress, nil},
		{"unparsable server fails closed", token("https://[::1"), Policy{}, ReasonDeniedAddress, []string{"not a URL"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.creds.Check(tc.policy)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Check refused: %v", err)
				}
				return
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Check = %v, want a *PolicyError with reason %s", err, tc.reason)
			}
			if pe.Reason != tc.reason {
				t.Fatalf("reason = %s (%s), want %s", pe.Reason, pe.Message, tc.reason)
			}
			if pe.Error() != pe.Message {
				t.Fatalf("Error() = %q, want the message %q", pe.Error(), pe.Message)
			}
			for _, s := range tc.says {
				if !strings.Contains(pe.Message, s) {
					t.Fatalf("message %q does not say %q", pe.Message, s)
				}
			}
			if strings.Contains(pe.Message, secretToken) || strings.Contains(pe.Message, "/home/team-a") || len(pe.Message) > 300 {
				t.Fatalf("message quotes too much: %q", pe.Message)
			}
		})
	}
}

func TestTransportInsecure(t *testing.T) {
	cases := []struct {
		server   string
		insecure bool
		want     bool
	}{
		{"https://10.0.0.1:6443", false, false},
		{"https://10.0.0.1:6443", true, true},
		{"http://10.0.0.1:8080", false, true},
		{"HTTP://10.0.0.1:8080", false, true},
		{"https://http.example.test", false, false},
		{"", false, false},
	}
	for _, tc := range cases {
		c := &Credentials{Server: tc.server, Insecure: tc.insecure}
		if got := c.TransportInsecure(); got != tc.want {
			t.Errorf("TransportInsecure(server %q, insecure %v) = %v, want %v", tc.server, tc.insecure, got, tc.want)
		}
	}
}

func TestTransportInsecureAfterParse(t *testing.T) {
	creds, err := Parse([]byte(kubeconfigYAML("h", "h", "    server: http://10.0.0.1:8080", "    token: "+secretToken)))
	if err != nil {
		t.Fatal(err)
	}
	if !creds.TransportInsecure() {
		t.Fatal("an http:// kubeconfig is not reported insecure")
	}
}

func TestParseCIDRs(t *testing.T) {
	cases := []struct {
		in      string
		want    []string // nil with wantErr
		wantErr bool
	}{
		{in: "", want: []string{"169.254.0.0/16", "fe80::/10"}},
		{in: "  ", want: []string{"169.254.0.0/16", "fe80::/10"}},
		{in: "none", want: []string{}},
		{in: "NONE", want: []string{}},
		{in: "10.0.0.0/8", want: []string{"10.0.0.0/8"}},
		{in: "10.0.0.0/8, 169.254.0.0/16 ,fd00::/8", want: []string{"10.0.0.0/8", "169.254.0.0/16", "fd00::/8"}},
		{in: "169.254.169.254/16", want: []string{"169.254.0.0/16"}},
		{in: "::ffff:169.254.0.0/112", want: []string{"169.254.0.0/16"}},
		{in: "169.254.169.254/32", want: []string{"169.254.169.254/32"}},
		{in: "169.254.169.254", wantErr: true},
		{in: "10.0.0.0/33", wantErr: true},
		{in: "10.0.0.0/8,", wantErr: true},
		{in: "none,10.0.0.0/8", wantErr: true},
		{in: "metadata.google.internal/32", wantErr: true},
	}
	for _, tc := range cases {
		got, err := ParseCIDRs(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("ParseCIDRs(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCIDRs(%q): %v", tc.in, err)
			continue
		}
		if got == nil {
			t.Errorf("ParseCIDRs(%q) = nil, which a Policy reads as the default", tc.in)
		}
		var gotStrings []string
		for _, p := range got {
			gotStrings = append(gotStrings, p.String())
		}
		if !slices.Equal(gotStrings, tc.want) {
			t.Errorf("ParseCIDRs(%q) = %v, want %v", tc.in, gotStrings, tc.want)
		}
	}
}

func TestParseCIDRsDefaultIsACopy(t *testing.T) {
	got, err := ParseCIDRs("")
	if err != nil {
		t.Fatal(err)
	}
	got[0] = netip.MustParsePrefix("10.0.0.0/8")
	if DefaultDeniedCIDRs[0].String() != "169.254.0.0/16" {
		t.Fatalf("changing ParseCIDRs' result changed DefaultDeniedCIDRs to %v", DefaultDeniedCIDRs)
	}
}

// TestParsedCIDRsDeny checks the parsed flag value and Check agree on what is denied, IPv4-mapped
// addresses included.
func TestParsedCIDRsDeny(t *testing.T) {
	denied, err := ParseCIDRs("")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"169.254.169.254", "::ffff:169.254.169.254", "169.254.0.1", "fe80::a9fe:a9fe", "fe80::1%eth0"} {
		if _, ok := deniedBy(netip.MustParseAddr(addr), denied); !ok {
			t.Errorf("%s is not denied by the default CIDRs", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1", "::1", "10.0.0.1", "169.255.0.1", "::ffff:10.0.0.1", "fd00:ec2::1"} {
		if prefix, ok := deniedBy(netip.MustParseAddr(addr), denied); ok {
			t.Errorf("%s is denied by %s", addr, prefix)
		}
	}
}

func TestInetAton(t *testing.T) {
	cases := map[string]string{ // "" means not an IPv4 form
		"2852039166":          "169.254.169.254",
		"0xa9fea9fe":          "169.254.169.254",
		"0251.0376.0251.0376": "169.254.169.254",
		"169.254.43518":       "169.254.169.254",
		"169.16689662":        "169.254.169.254",
		"127.1":               "127.0.0.1",
		"0":                   "0.0.0.0",
		"4294967295":          "255.255.255.255",
		"4294967296":          "",
		"256.1.1.1":           "",
		"1.2.3.256":           "",
		"1.2.65536":           "",
		"1.2.3.4.5":           "",
		"08":                  "",
		"0x":                  "",
		"1..2":                "",
		"+1":                  "",
		"api.example.test":    "",
		"10.example":          "",
		"":                    "",
	}
	for in, want := range cases {
		addr, ok := inetAton(in)
		got := ""
		if ok {
			got = addr.String()
		}
		if got != want {
			t.Errorf("inetAton(%q) = %q, want %q", in, got, want)
		}
	}
}
