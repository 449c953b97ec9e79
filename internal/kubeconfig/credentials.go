package kubeconfig

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Credentials are what one kubeconfig context grants, with every byte embedded.
type Credentials struct {
	Server             string
	CAData             []byte
	ServerName         string
	Insecure           bool
	ProxyURL           string
	DisableCompression bool

	CertData, KeyData  []byte
	BearerToken        string
	Username, Password string
	Exec               *ExecProvider
}

// ExecProvider is a client-go exec credential plugin, passed on to consumers that run it themselves.
type ExecProvider struct {
	Command     string
	Args        []string
	Env         map[string]string
	APIVersion  string
	InstallHint string
}

// Error says why a kubeconfig cannot be used. Message never contains credential material.
type Error struct {
	Message string
}

func (e *Error) Error() string { return e.Message }

func invalid(format string, args ...any) error { return &Error{Message: fmt.Sprintf(format, args...)} }

var lineNumber = regexp.MustCompile(`line \d+`)

// Parse reads the current context of a kubeconfig (or its only context when none is current).
func Parse(data []byte) (*Credentials, error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, invalid("kubeconfig is empty")
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		// Decoder errors can quote the input; keep only the position.
		where := lineNumber.FindString(err.Error())
		if where != "" {
			where = " (" + where + ")"
		}
		return nil, invalid("kubeconfig cannot be parsed%s", where)
	}
	contextName := cfg.CurrentContext
	if contextName == "" {
		if len(cfg.Contexts) != 1 {
			return nil, invalid("kubeconfig has no current-context and %d contexts", len(cfg.Contexts))
		}
		for name := range cfg.Contexts {
			contextName = name
		}
	}
	kctx, ok := cfg.Contexts[contextName]
	if !ok || kctx == nil {
		return nil, invalid("kubeconfig context %q does not exist", bounded(contextName, maxQuotedName))
	}
	cluster, ok := cfg.Clusters[kctx.Cluster]
	if !ok || cluster == nil {
		return nil, invalid("kubeconfig context %q names cluster %q, which does not exist", bounded(contextName, maxQuotedName), bounded(kctx.Cluster, maxQuotedName))
	}
	user, ok := cfg.AuthInfos[kctx.AuthInfo]
	if !ok || user == nil {
		return nil, invalid("kubeconfig context %q names user %q, which does not exist", bounded(contextName, maxQuotedName), bounded(kctx.AuthInfo, maxQuotedName))
	}
	creds := &Credentials{}
	if err := creds.readCluster(cluster); err != nil {
		return nil, err
	}
	if err := creds.readUser(user); err != nil {
		return nil, err
	}
	return creds, nil
}

func (c *Credentials) readCluster(cluster *clientcmdapi.Cluster) error {
	u, err := url.Parse(cluster.Server)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return invalid("kubeconfig cluster server %q is not an http(s) URL", redactURL(cluster.Server))
	}
	if u.User != nil {
		return invalid("kubeconfig cluster server URL must not contain user info")
	}
	if cluster.CertificateAuthority != "" {
		return invalid("kubeconfig refers to a file (certificate-authority); only embedded certificate-authority-data is supported")
	}
	if len(cluster.CertificateAuthorityData) > 0 && !hasPEMBlock(cluster.CertificateAuthorityData, "CERTIFICATE") {
		return invalid("kubeconfig certificate-authority-data holds no PEM certificate")
	}
	c.Server = strings.TrimSuffix(cluster.Server, "/")
	c.CAData = cluster.CertificateAuthorityData
	c.ServerName = cluster.TLSServerName
	c.Insecure = cluster.InsecureSkipTLSVerify
	c.ProxyURL = cluster.ProxyURL
	c.DisableCompression = cluster.DisableCompression
	return nil
}

func (c *Credentials) readUser(user *clientcmdapi.AuthInfo) error {
	switch {
	case user.ClientCertificate != "" || user.ClientKey != "":
		return invalid("kubeconfig refers to a file (client-certificate/client-key); only embedded data is supported")
	case user.TokenFile != "":
		return invalid("kubeconfig refers to a file (tokenFile); only an embedded token is supported")
	case user.AuthProvider != nil:
		return invalid("kubeconfig uses the removed auth-provider %q; use an exec plugin or an embedded credential", bounded(user.AuthProvider.Name, maxQuotedName))
	case user.Impersonate != "" || len(user.ImpersonateGroups) > 0 || user.ImpersonateUID != "":
		return invalid("kubeconfig impersonation (as, as-groups, as-uid) is not supported")
	case (len(user.ClientCertificateData) > 0) != (len(user.ClientKeyData) > 0):
		return invalid("kubeconfig has only one of client-certificate-data and client-key-data")
	}
	if len(user.ClientCertificateData) > 0 {
		if _, err := tls.X509KeyPair(user.ClientCertificateData, user.ClientKeyData); err != nil {
			return invalid("kubeconfig client-certificate-data and client-key-data are not a matching PEM certificate and key")
		}
	}
	c.CertData = user.ClientCertificateData
	c.KeyData = user.ClientKeyData
	c.BearerToken = user.Token
	c.Username = user.Username
	c.Password = user.Password
	if user.Exec != nil {
		if user.Exec.Command == "" {
			return invalid("kubeconfig exec plugin has no command")
		}
		env := map[string]string{}
		for _, e := range user.Exec.Env {
			env[e.Name] = e.Value
		}
		c.Exec = &ExecProvider{
			Command: user.Exec.Command, Args: user.Exec.Args, Env: env,
			APIVersion: user.Exec.APIVersion, InstallHint: user.Exec.InstallHint,
		}
	}
	if !c.HasEmbeddedCredential() && c.Exec == nil {
		return invalid("kubeconfig user has no credentials (no client certificate, token, basic auth or exec plugin)")
	}
	return nil
}

// HasEmbeddedCredential says whether the credentials work without running anything: a client
// certificate, a bearer token, or basic auth.
func (c *Credentials) HasEmbeddedCredential() bool {
	return len(c.CertData) > 0 || c.BearerToken != "" || c.Username != ""
}

// RESTConfig is a client config for the controller's own calls to the workload cluster. Exec plugins are
// refused: the controller does not run commands named in a Secret.
func (c *Credentials) RESTConfig() (*rest.Config, error) {
	if !c.HasEmbeddedCredential() {
		return nil, invalid("kubeconfig has only an exec plugin, which the controller does not run; provide embedded credentials")
	}
	cfg := &rest.Config{
		Host:               c.Server,
		BearerToken:        c.BearerToken,
		Username:           c.Username,
		Password:           c.Password,
		DisableCompression: c.DisableCompression,
		TLSClientConfig: rest.TLSClientConfig{
			Insecure:   c.Insecure,
			ServerName: c.ServerName,
			CAData:     caUnlessInsecure(c),
			CertData:   c.CertData,
			KeyData:    c.KeyData,
		},
	}
	if c.ProxyURL != "" {
		u, err := url.Parse(c.ProxyURL)
		if err != nil {
			return nil, invalid("kubeconfig proxy-url is not a URL")
		}
		cfg.Proxy = func(*http.Request) (*url.URL, error) { return u, nil }
	}
	return cfg, nil
}

// caUnlessInsecure drops the CA when TLS verification is off: client-go refuses the combination.
func caUnlessInsecure(c *Credentials) []byte {
	if c.Insecure {
		return nil
	}
	return c.CAData
}

func hasPEMBlock(data []byte, blockType string) bool {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return false
		}
		if block.Type == blockType {
			return true
		}
	}
}

// maxQuotedName and maxQuotedURL bound the names and the server URL a message quotes: the kubeconfig
// comes from a Secret anyone with Secret write in the namespace can author, and the message goes to a
// status and an Event.
const (
	maxQuotedName = 64
	maxQuotedURL  = 128
)

// redactURL drops everything before a URL's last "@", so an error message never carries a password from
// it. url.URL.Redacted would not do: it keeps the password of a URL without "//"
// ("admin:pw@10.0.0.1:6443" parses as scheme "admin"), and only malformed URLs are quoted.
func redactURL(raw string) string {
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		scheme := ""
		if i := strings.Index(raw[:at], "://"); i >= 0 {
			scheme = raw[:i+len("://")]
		}
		raw = scheme + "xxxxx" + raw[at:]
	}
	return bounded(raw, maxQuotedURL)
}
