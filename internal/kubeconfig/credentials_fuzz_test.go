package kubeconfig

import (
	"bytes"
	"encoding/base64"
	"errors"
	"path"
	"regexp"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Distinctive credential values of the seed kubeconfigs: the fuzzer's mutations keep them around, so
// an error path that quotes a field shows them.
const (
	seedToken     = "fuzz-seed-token-7f3a9c1e5b"
	seedPassword  = "fuzz-seed-password-2d8e4f6a"
	seedEnvSecret = "fuzz-seed-client-secret-9b1c3e"
	seedArgSecret = "fuzz-seed-arg-secret-4a6c8e0f"
)

// maxMessageLen bounds an error message, which goes to a status and an Event, whatever the input.
const maxMessageLen = 1024

// minSecretLen is the shortest credential value the leak check looks for: shorter values also occur by
// chance in the messages' own words and in names the messages quote.
const minSecretLen = 8

// FuzzParse checks that no input makes Parse, Check or RESTConfig panic, and that no error they return
// quotes the input's credential material.
func FuzzParse(f *testing.F) {
	ca, cert, key := testPKI(f)
	b64 := base64.StdEncoding.EncodeToString
	caBlock := "    server: https://10.0.0.1:6443\n    certificate-authority-data: " + b64(ca)
	seeds := []string{
		kubeconfigYAML("admin@c", "admin@c", caBlock, "    client-certificate-data: "+b64(cert)+"\n    client-key-data: "+b64(key)),
		kubeconfigYAML("mismatch", "mismatch", caBlock, "    client-certificate-data: "+b64(ca)+"\n    client-key-data: "+b64(key)),
		kubeconfigYAML("eks", "eks", caBlock, "    token: "+seedToken),
		kubeconfigYAML("basic", "basic", caBlock, "    username: admin\n    password: "+seedPassword),
		kubeconfigYAML("aks", "aks", caBlock, "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: /usr/local/bin/kubelogin\n"+
			"      args: [get-token, --client-secret, "+seedArgSecret+"]\n      env: [{name: AAD_SERVICE_PRINCIPAL_CLIENT_SECRET, value: "+seedEnvSecret+"}]"),
		kubeconfigYAML("exec-no-command", "exec-no-command", caBlock, "    exec: {apiVersion: client.authentication.k8s.io/v1, env: [{name: K, value: "+seedEnvSecret+"}]}"),
		kubeconfigYAML("insecure", "insecure", "    server: https://10.0.0.1:6443\n    insecure-skip-tls-verify: true\n    tls-server-name: api.internal\n    proxy-url: http://proxy:"+seedPassword+"@10.0.0.9:3128", "    token: "+seedToken),
		kubeconfigYAML("http", "http", "    server: http://10.0.0.1:8080", "    token: "+seedToken),
		kubeconfigYAML("metadata", "metadata", "    server: https://[::ffff:169.254.169.254]:443", "    token: "+seedToken),
		kubeconfigYAML("userinfo", "userinfo", "    server: https://admin:"+seedPassword+"@10.0.0.1", "    token: "+seedToken),
		kubeconfigYAML("no-scheme", "no-scheme", "    server: admin:"+seedPassword+"@10.0.0.1:6443", "    token: "+seedToken),
		kubeconfigYAML("files", "files", "    server: https://10.0.0.1\n    certificate-authority: /etc/ca.pem", "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n    token: "+seedToken),
		kubeconfigYAML("missing", "other", caBlock, "    token: "+seedToken),
		"apiVersion: v1\nclusters: [\n  token: " + seedToken,
		"{\"apiVersion\":\"v1\",\"kind\":\"Config\",\"current-context\":\"j\",\"clusters\":[{\"name\":\"c\",\"cluster\":{\"server\":\"https://10.0.0.1\"}}]," +
			"\"users\":[{\"name\":\"u\",\"user\":{\"token\":\"" + seedToken + "\"}}],\"contexts\":[{\"name\":\"j\",\"context\":{\"cluster\":\"c\",\"user\":\"u\"}}]}",
		"a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\nusers: [{name: u, user: {token: " + seedToken + "}}]\n",
		kubeconfigYAML("huge", "huge", caBlock, "    token: "+seedToken+strings.Repeat("A", 64<<10)),
		"",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for stage, err := range stages(data) {
			if err != nil {
				checkNoCredentials(t, data, stage, err)
			}
		}
	})
}

// stages runs Parse and, when it succeeds, Check with a zero Policy and RESTConfig, yielding each
// stage's error.
func stages(data []byte) func(yield func(string, error) bool) {
	return func(yield func(string, error) bool) {
		creds, err := Parse(data)
		if !yield("Parse", err) || err != nil {
			return
		}
		_ = creds.TransportInsecure()
		checkErr := creds.Check(Policy{})
		var pe *PolicyError
		if checkErr != nil && !errors.As(checkErr, &pe) {
			panic("Check returned an error that is not a *PolicyError: " + checkErr.Error())
		}
		if !yield("Check", checkErr) {
			return
		}
		_, restErr := creds.RESTConfig()
		yield("RESTConfig", restErr)
	}
}

// unparsable is every message Parse gives for input the kubeconfig decoder refuses.
var unparsable = regexp.MustCompile(`^kubeconfig (is empty|cannot be parsed( \(line \d+\))?)$`)

// checkNoCredentials fails when err, from stage, quotes a credential value of data, whole or a
// leakWindow-long part of it. A value the message quotes only counts when changing it in the input
// changes the message the same way: a value that happens to equal words of the message, or a name the
// message quotes, is no leak.
func checkNoCredentials(t *testing.T, data []byte, stage string, err error) {
	t.Helper()
	msg := err.Error()
	if len(msg) > maxMessageLen {
		t.Fatalf("%s error is %d bytes long, want at most %d: %.200q...", stage, len(msg), maxMessageLen, msg)
	}
	cfg, loadErr := clientcmd.Load(data)
	if loadErr != nil {
		if !unparsable.MatchString(msg) {
			t.Fatalf("%s of input the decoder refuses says %q, want only the position", stage, msg)
		}
		return
	}
	secrets := credentialValues(cfg)
	for _, seed := range []string{seedToken, seedPassword, seedEnvSecret, seedArgSecret} {
		if bytes.Contains(data, []byte(seed)) {
			secrets = append(secrets, seed)
		}
	}
	public := publicText(cfg)
	for _, secret := range secrets {
		if len(secret) < minSecretLen || !quotes(msg, secret) || strings.Contains(public, secret) {
			continue
		}
		if !bytes.Contains(data, []byte(secret)) {
			// Written escaped or encoded: there is no input text to change, and chance is not a cause.
			t.Fatalf("%s error quotes a credential value %q: %q", stage, bounded(secret, 40), msg)
		}
		canary := canaryOf(len(secret), data)
		for s, err := range stages(bytes.ReplaceAll(data, []byte(secret), []byte(canary))) {
			if s == stage && err != nil && quotes(err.Error(), canary) {
				t.Fatalf("%s error quotes a credential value %q: %q", stage, bounded(secret, 40), msg)
			}
		}
	}
}

// leakWindow is the length of a credential's part the leak check looks for in a message: a message
// that quotes a credential cut short still leaks it.
const leakWindow = 16

// quotes reports whether msg contains secret, or any leakWindow bytes of it.
func quotes(msg, secret string) bool {
	if len(secret) <= leakWindow || len(msg) < leakWindow {
		return strings.Contains(msg, secret)
	}
	windows := make(map[string]bool, len(msg))
	for i := 0; i+leakWindow <= len(msg); i++ {
		windows[msg[i:i+leakWindow]] = true
	}
	for i := 0; i+leakWindow <= len(secret); i++ {
		if windows[secret[i:i+leakWindow]] {
			return true
		}
	}
	return false
}

// credentialValues are the secret values of a kubeconfig: tokens, passwords, private keys (as decoded
// and as written), exec plugin arguments and environment values, and URL user info.
func credentialValues(cfg *clientcmdapi.Config) []string {
	var out []string
	for _, user := range cfg.AuthInfos {
		if user == nil {
			continue
		}
		out = append(out, user.Token, user.Password)
		if len(user.ClientKeyData) > 0 {
			out = append(out, string(user.ClientKeyData), base64.StdEncoding.EncodeToString(user.ClientKeyData))
		}
		if user.Exec != nil {
			out = append(out, user.Exec.Args...)
			for _, env := range user.Exec.Env {
				out = append(out, env.Value)
			}
		}
	}
	for _, cluster := range cfg.Clusters {
		if cluster != nil {
			out = append(out, userInfo(cluster.Server)...)
			out = append(out, userInfo(cluster.ProxyURL)...)
		}
	}
	return out
}

// userInfo is what precedes the last "@" of a URL, and its password part: credentials even when the
// URL is malformed ("admin:pw@10.0.0.1" parses as scheme "admin").
func userInfo(raw string) []string {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return nil
	}
	info := raw[:at]
	if i := strings.Index(info, "://"); i >= 0 {
		info = info[i+len("://"):]
	}
	out := []string{info}
	if i := strings.Index(info, ":"); i >= 0 {
		out = append(out, info[i+1:])
	}
	return out
}

// publicText joins what the messages may quote: names of contexts, clusters and users, the server URL
// without its user info, the auth-provider's name and the exec plugin's command name.
func publicText(cfg *clientcmdapi.Config) string {
	parts := []string{cfg.CurrentContext}
	for name, kctx := range cfg.Contexts {
		parts = append(parts, name)
		if kctx != nil {
			parts = append(parts, kctx.Cluster, kctx.AuthInfo)
		}
	}
	for name, cluster := range cfg.Clusters {
		parts = append(parts, name)
		if cluster != nil {
			parts = append(parts, withoutUserInfo(cluster.Server))
		}
	}
	for name, user := range cfg.AuthInfos {
		parts = append(parts, name)
		if user != nil && user.AuthProvider != nil {
			parts = append(parts, user.AuthProvider.Name)
		}
		if user != nil && user.Exec != nil {
			parts = append(parts, path.Base(user.Exec.Command))
		}
	}
	return strings.Join(parts, "\x00")
}

func withoutUserInfo(raw string) string {
	for _, info := range userInfo(raw) {
		raw = strings.ReplaceAll(raw, info, "")
	}
	return raw
}

// canaryOf is a string of length n that data does not contain.
func canaryOf(n int, data []byte) string {
	for _, alphabet := range []string{"Qz", "Zq", "Xj", "Jx"} {
		canary := strings.Repeat(alphabet, n/2+1)[:n]
		if !bytes.Contains(data, []byte(canary)) {
			return canary
		}
	}
	return strings.Repeat("W", n)
}
