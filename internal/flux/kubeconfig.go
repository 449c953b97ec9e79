package flux

import (
	"fmt"

	"github.com/fluxcd/pkg/apis/meta"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
)

const (
	// WatchLabel makes Flux controllers react to a change of the Secret at once (a token rotation).
	WatchLabel   = "reconcile.fluxcd.io/watch"
	WatchEnabled = "Enabled"
	// KubeconfigKey is the key Flux reads by default.
	KubeconfigKey = "value"
)

// KubeConfigRef is what a Kustomization or HelmRelease in the Secret's namespace puts in spec.kubeConfig.
func KubeConfigRef(secretName string) meta.KubeConfigReference {
	return meta.KubeConfigReference{SecretRef: &meta.SecretKeyReference{Name: secretName, Key: KubeconfigKey}}
}

// Kubeconfig renders a self-contained kubeconfig Flux accepts: embedded CA and either the given bearer
// token or, when token is empty, the credentials' own embedded client certificate or token. Flux drops
// exec plugins and file references, so credentials that need them are refused.
func Kubeconfig(c *kubeconfig.Credentials, token string) ([]byte, error) {
	user := &clientcmdapi.AuthInfo{}
	switch {
	case token != "":
		user.Token = token
	case len(c.CertData) > 0:
		user.ClientCertificateData, user.ClientKeyData = c.CertData, c.KeyData
	case c.BearerToken != "":
		user.Token = c.BearerToken
	default:
		return nil, fmt.Errorf("Flux needs an embedded client certificate or token; the CAPI kubeconfig has only an exec plugin or basic auth (use mode ServiceAccountToken)")
	}
	cluster := &clientcmdapi.Cluster{
		Server:                   c.Server,
		CertificateAuthorityData: c.CAData,
		TLSServerName:            c.ServerName,
		InsecureSkipTLSVerify:    c.Insecure,
		ProxyURL:                 c.ProxyURL,
		DisableCompression:       c.DisableCompression,
	}
	if c.Insecure {
		cluster.CertificateAuthorityData = nil
	}
	const name = "fleetbridge"
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{name: cluster},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{name: user},
		Contexts:       map[string]*clientcmdapi.Context{name: {Cluster: name, AuthInfo: name}},
		CurrentContext: name,
	}
	return clientcmd.Write(cfg)
}

// Token reads the bearer token back from a kubeconfig this package rendered.
func Token(data []byte) string {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return ""
	}
	if ctx := cfg.Contexts[cfg.CurrentContext]; ctx != nil {
		if user := cfg.AuthInfos[ctx.AuthInfo]; user != nil {
			return user.Token
		}
	}
	return ""
}
