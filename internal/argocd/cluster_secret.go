package argocd

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
)

// Labels and keys Argo CD reads on a cluster Secret.
const (
	SecretTypeLabel   = "argocd.argoproj.io/secret-type"
	SecretTypeCluster = "cluster"

	KeyName             = "name"
	KeyServer           = "server"
	KeyConfig           = "config"
	KeyProject          = "project"
	KeyNamespaces       = "namespaces"
	KeyClusterResources = "clusterResources"
)

// DataKeys are the data keys fleetbridge owns on a cluster Secret.
var DataKeys = []string{KeyName, KeyServer, KeyConfig, KeyProject, KeyNamespaces, KeyClusterResources}

// ClusterConfig is the `config` JSON of a cluster Secret. Byte fields marshal as base64, which is what
// Argo CD expects for caData/certData/keyData.
type ClusterConfig struct {
	Username           string          `json:"username,omitempty"`
	Password           string          `json:"password,omitempty"`
	BearerToken        string          `json:"bearerToken,omitempty"`
	TLSClientConfig    TLSClientConfig `json:"tlsClientConfig"`
	ExecProviderConfig *ExecProvider   `json:"execProviderConfig,omitempty"`
	DisableCompression bool            `json:"disableCompression,omitempty"`
	ProxyURL           string          `json:"proxyUrl,omitempty"`
}

// TLSClientConfig is the TLS part of ClusterConfig.
type TLSClientConfig struct {
	Insecure   bool   `json:"insecure"`
	ServerName string `json:"serverName,omitempty"`
	CAData     []byte `json:"caData,omitempty"`
	CertData   []byte `json:"certData,omitempty"`
	KeyData    []byte `json:"keyData,omitempty"`
}

// ExecProvider is an exec credential plugin Argo CD runs itself.
type ExecProvider struct {
	Command     string            `json:"command,omitempty"`
	Args        []string          `json:"args,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	APIVersion  string            `json:"apiVersion,omitempty"`
	InstallHint string            `json:"installHint,omitempty"`
}

// TLSFrom copies the server side of the credentials (CA, server name, insecure flag).
func TLSFrom(c *kubeconfig.Credentials) TLSClientConfig {
	tls := TLSClientConfig{Insecure: c.Insecure, ServerName: c.ServerName}
	if !c.Insecure {
		tls.CAData = c.CAData
	}
	return tls
}

// BearerTokenConfig authenticates with a minted ServiceAccount token against the server described by c.
func BearerTokenConfig(c *kubeconfig.Credentials, token string) ClusterConfig {
	return ClusterConfig{
		BearerToken:        token,
		TLSClientConfig:    TLSFrom(c),
		DisableCompression: c.DisableCompression,
		ProxyURL:           c.ProxyURL,
	}
}

// KubeconfigConfig carries the kubeconfig's own credentials over, exec plugins included (Argo CD runs
// them; the image must contain the plugin binary).
func KubeconfigConfig(c *kubeconfig.Credentials) ClusterConfig {
	cfg := ClusterConfig{
		Username:           c.Username,
		Password:           c.Password,
		BearerToken:        c.BearerToken,
		TLSClientConfig:    TLSFrom(c),
		DisableCompression: c.DisableCompression,
		ProxyURL:           c.ProxyURL,
	}
	cfg.TLSClientConfig.CertData = c.CertData
	cfg.TLSClientConfig.KeyData = c.KeyData
	if c.Exec != nil {
		cfg.ExecProviderConfig = &ExecProvider{
			Command: c.Exec.Command, Args: c.Exec.Args, Env: c.Exec.Env,
			APIVersion: c.Exec.APIVersion, InstallHint: c.Exec.InstallHint,
		}
	}
	return cfg
}

// ClusterSecretData is everything Argo CD reads from one cluster Secret.
type ClusterSecretData struct {
	Name             string
	Server           string
	Project          string
	Namespaces       []string
	ClusterResources bool
	Config           ClusterConfig
}

// Data renders the Secret's data. Keys with no value are left out, as Argo CD writes them.
func (d ClusterSecretData) Data() (map[string][]byte, error) {
	config, err := json.Marshal(d.Config)
	if err != nil {
		return nil, fmt.Errorf("marshal cluster config: %w", err)
	}
	data := map[string][]byte{
		KeyName:   []byte(d.Name),
		KeyServer: []byte(strings.TrimSuffix(d.Server, "/")),
		KeyConfig: config,
	}
	if d.Project != "" {
		data[KeyProject] = []byte(d.Project)
	}
	if len(d.Namespaces) > 0 {
		data[KeyNamespaces] = []byte(strings.Join(d.Namespaces, ","))
		if d.ClusterResources {
			data[KeyClusterResources] = []byte("true")
		}
	}
	return data, nil
}

// ParseConfig reads a `config` value back, for example to reuse a still-valid token.
func ParseConfig(raw []byte) (ClusterConfig, error) {
	var cfg ClusterConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return ClusterConfig{}, fmt.Errorf("cluster config is not valid JSON")
	}
	return cfg, nil
}
