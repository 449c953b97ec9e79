package kubeconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

const secretToken = "s3cr3t-token-value"

// testPKI returns a PEM CA certificate and a matching client certificate and key.
func testPKI(t testing.TB) (ca, cert, key []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	clientKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	clientTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	clientDER, err := x509.CreateCertificate(rand.Reader, clientTmpl, caTmpl, &clientKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(clientKey)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// kubeconfigYAML builds a one-context kubeconfig; cluster and user are YAML bodies indented by the caller.
func kubeconfigYAML(contextName, current, cluster, user string) string {
	return `apiVersion: v1
kind: Config
current-context: "` + current + `"
clusters:
- name: c
  cluster:
` + cluster + `
users:
- name: u
  user:
` + user + `
contexts:
- name: "` + contextName + `"
  context: {cluster: c, user: u}
`
}

func TestParse(t *testing.T) {
	ca, cert, key := testPKI(t)
	b64 := base64.StdEncoding.EncodeToString
	caBlock := "    server: https://10.0.0.1:6443\n    certificate-authority-data: " + b64(ca)
	certUser := "    client-certificate-data: " + b64(cert) + "\n    client-key-data: " + b64(key)
	tokenUser := "    token: " + secretToken

	type want struct {
		errContains string
		cert, token bool
		basic, exec bool
		insecure    bool
		serverName  string
		proxy       string
		restConfig  bool // RESTConfig succeeds (the controller can use it itself)
	}
	cases := []struct {
		name string
		in   string
		want want
	}{
		{"kubeadm admin client certificate", kubeconfigYAML("c-admin@c", "c-admin@c", caBlock, certUser),
			want{cert: true, restConfig: true}},
		{"EKS embedded presigned token", kubeconfigYAML("eks", "eks", caBlock, tokenUser),
			want{token: true, restConfig: true}},
		{"GKE context name with underscores and OAuth token", kubeconfigYAML("gke_proj_europe-west1_c1", "gke_proj_europe-west1_c1", caBlock, tokenUser),
			want{token: true, restConfig: true}},
		{"AKS Entra exec plugin (kubelogin)", kubeconfigYAML("aks", "aks", caBlock,
			"    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: kubelogin\n      args: [get-token, --server-id, x]\n      env: [{name: AAD_LOGIN_METHOD, value: workloadidentity}]"),
			want{exec: true}},
		{"AKS admin certificate", kubeconfigYAML("aks-admin", "aks-admin", caBlock, certUser),
			want{cert: true, restConfig: true}},
		{"no current-context, single context", kubeconfigYAML("only", "", caBlock, tokenUser),
			want{token: true, restConfig: true}},
		{"basic auth", kubeconfigYAML("b", "b", caBlock, "    username: admin\n    password: "+secretToken),
			want{basic: true, restConfig: true}},
		{"insecure with server name and proxy", kubeconfigYAML("p", "p",
			"    server: https://10.0.0.1:6443\n    insecure-skip-tls-verify: true\n    tls-server-name: api.internal\n    proxy-url: http://proxy:3128", tokenUser),
			want{token: true, insecure: true, serverName: "api.internal", proxy: "http://proxy:3128", restConfig: true}},
		{"token file reference", kubeconfigYAML("f", "f", caBlock, "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token"),
			want{errContains: "tokenFile"}},
		{"client certificate file reference", kubeconfigYAML("f", "f", caBlock, "    client-certificate: /etc/cert.pem\n    client-key: /etc/key.pem"),
			want{errContains: "client-certificate"}},
		{"CA file reference", kubeconfigYAML("f", "f", "    server: https://10.0.0.1:6443\n    certificate-authority: /etc/ca.pem", tokenUser),
			want{errContains: "certificate-authority"}},
		{"legacy auth-provider", kubeconfigYAML("g", "g", caBlock, "    auth-provider:\n      name: gcp"),
			want{errContains: "auth-provider"}},
		{"impersonation", kubeconfigYAML("i", "i", caBlock, tokenUser+"\n    as: someone"),
			want{errContains: "impersonation"}},
		{"certificate without key", kubeconfigYAML("k", "k", caBlock, "    client-certificate-data: "+b64(cert)),
			want{errContains: "only one of"}},
		{"key that does not match the certificate", kubeconfigYAML("k", "k", caBlock, "    client-certificate-data: "+b64(ca)+"\n    client-key-data: "+b64(key)),
			want{errContains: "not a matching"}},
		{"CA data that is not PEM", kubeconfigYAML("k", "k", "    server: https://10.0.0.1:6443\n    certificate-authority-data: "+b64([]byte("not pem")), tokenUser),
			want{errContains: "no PEM certificate"}},
		{"no credentials", kubeconfigYAML("n", "n", caBlock, "    {}"),
			want{errContains: "no credentials"}},
		{"current-context names a missing context", kubeconfigYAML("a", "b", caBlock, tokenUser),
			want{errContains: `context "b" does not exist`}},
		{"server is not a URL", kubeconfigYAML("s", "s", "    server: 10.0.0.1:6443", tokenUser),
			want{errContains: "not an http(s) URL"}},
		{"server URL with user info", kubeconfigYAML("s", "s", "    server: https://admin:"+secretToken+"@10.0.0.1", tokenUser),
			want{errContains: "user info"}},
		{"server without scheme, with user info", kubeconfigYAML("s", "s", "    server: admin:"+secretToken+"@10.0.0.1:6443", tokenUser),
			want{errContains: `"xxxxx@10.0.0.1:6443" is not an http(s) URL`}},
		{"malformed YAML", "apiVersion: v1\nclusters: [\n  token: " + secretToken, want{errContains: "cannot be parsed"}},
		{"empty", "", want{errContains: "empty"}},
		{"two contexts and none current", kubeconfigYAML("a", "", caBlock, tokenUser) + "- name: other\n  context: {cluster: c, user: u}\n",
			want{errContains: "no current-context"}},
	}
	if len(cases) < 15 {
		t.Fatalf("the issue asks for at least 15 variants, have %d", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			creds, err := Parse([]byte(tc.in))
			if tc.want.errContains != "" {
				if err == nil {
					t.Fatalf("Parse succeeded, want error containing %q", tc.want.errContains)
				}
				if !strings.Contains(err.Error(), tc.want.errContains) {
					t.Fatalf("error %q does not contain %q", err, tc.want.errContains)
				}
				if strings.Contains(err.Error(), secretToken) || strings.Contains(err.Error(), b64(key)) {
					t.Fatalf("error leaks credential material: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := want{
				cert: len(creds.CertData) > 0, token: creds.BearerToken != "", basic: creds.Username != "",
				exec: creds.Exec != nil, insecure: creds.Insecure, serverName: creds.ServerName, proxy: creds.ProxyURL,
			}
			_, restErr := creds.RESTConfig()
			got.restConfig = restErr == nil
			if got != tc.want {
				t.Fatalf("got %+v, want %+v (RESTConfig error: %v)", got, tc.want, restErr)
			}
			if creds.Server != "https://10.0.0.1:6443" {
				t.Fatalf("server = %q", creds.Server)
			}
		})
	}
}

func TestParseBoundsQuotedValues(t *testing.T) {
	long := strings.Repeat("n", 10000)
	for name, in := range map[string]string{
		"context":       kubeconfigYAML("a", long, "    server: https://10.0.0.1", "    token: "+secretToken),
		"auth-provider": kubeconfigYAML("a", "a", "    server: https://10.0.0.1", "    auth-provider: {name: "+long+"}"),
		"server":        kubeconfigYAML("a", "a", "    server: "+long, "    token: "+secretToken),
	} {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Fatalf("%s: Parse succeeded", name)
		}
		if len(err.Error()) > 300 || !strings.Contains(err.Error(), `..."`) {
			t.Errorf("%s: the error quotes %d bytes unbounded: %.100q", name, len(err.Error()), err)
		}
	}
}
