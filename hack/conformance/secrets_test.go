package conformance

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appv1 "github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v2/util/db"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// fixtures reads the Secrets fleetbridge's own envtest tests produced (make test sets
// FLEETBRIDGE_FIXTURES for both modules). No fixtures is a failure, not a skip.
func fixtures(t *testing.T, kind string) map[string][]byte {
	t.Helper()
	dir := os.Getenv("FLEETBRIDGE_FIXTURES")
	if dir == "" {
		t.Fatal("FLEETBRIDGE_FIXTURES is not set: run `make test`, which runs fleetbridge's tests first to produce the fixtures")
	}
	files, err := filepath.Glob(filepath.Join(dir, kind, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = data
	}
	return out
}

// Argo CD's own SecretToCluster reads every cluster Secret fleetbridge wrote, with every field intact,
// and the TLS material decodes as Argo CD will use it.
func TestArgoCDReadsFleetbridgeClusterSecrets(t *testing.T) {
	files := fixtures(t, "argocd-cluster-secrets")
	if len(files) < 3 {
		t.Fatalf("want at least 3 fixtures (ServiceAccountToken and Kubeconfig modes), have %d", len(files))
	}
	modes := map[string]int{}
	for name, data := range files {
		t.Run(name, func(t *testing.T) {
			secret := &corev1.Secret{}
			if err := yaml.UnmarshalStrict(data, secret); err != nil {
				t.Fatalf("fixture is not a Secret: %v", err)
			}
			if secret.Labels["argocd.argoproj.io/secret-type"] != "cluster" {
				t.Fatal("missing argocd.argoproj.io/secret-type=cluster")
			}
			// Unknown fields in config would be silently ignored by Argo CD: reject them here.
			dec := json.NewDecoder(bytes.NewReader(secret.Data["config"]))
			dec.DisallowUnknownFields()
			var strict appv1.ClusterConfig
			if err := dec.Decode(&strict); err != nil {
				t.Fatalf("config does not decode strictly as Argo CD's ClusterConfig: %v", err)
			}

			cluster, err := db.SecretToCluster(secret)
			if err != nil {
				t.Fatalf("SecretToCluster: %v", err)
			}
			if cluster.Name != string(secret.Data["name"]) || cluster.Name == "" {
				t.Errorf("name = %q", cluster.Name)
			}
			if cluster.Server != string(secret.Data["server"]) || !strings.HasPrefix(cluster.Server, "https://") {
				t.Errorf("server = %q", cluster.Server)
			}
			if cluster.Project != string(secret.Data["project"]) {
				t.Errorf("project = %q", cluster.Project)
			}
			if got, want := strings.Join(cluster.Namespaces, ","), string(secret.Data["namespaces"]); got != want {
				t.Errorf("namespaces = %q, want %q", got, want)
			}
			if cluster.ClusterResources != (string(secret.Data["clusterResources"]) == "true") {
				t.Errorf("clusterResources = %v", cluster.ClusterResources)
			}
			for k, v := range secret.Labels {
				if k == "argocd.argoproj.io/secret-type" {
					continue
				}
				if cluster.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, cluster.Labels[k], v)
				}
			}
			for _, k := range []string{"fleetbridge.io/registration", "fleetbridge.io/cluster-name", "fleetbridge.io/cluster-namespace"} {
				if cluster.Labels[k] == "" {
					t.Errorf("ownership label %s did not reach Argo CD's cluster", k)
				}
			}

			if !hasPEM(cluster.Config.TLSClientConfig.CAData, "CERTIFICATE") {
				t.Error("caData does not decode to a PEM certificate")
			}
			switch {
			case cluster.Config.BearerToken != "":
				modes["token"]++
				if strings.Count(cluster.Config.BearerToken, ".") != 2 {
					t.Error("bearer token is not a JWT")
				}
			case len(cluster.Config.TLSClientConfig.CertData) > 0:
				modes["cert"]++
				if !hasPEM(cluster.Config.TLSClientConfig.CertData, "CERTIFICATE") {
					t.Error("certData does not decode to a PEM certificate")
				}
			case cluster.Config.ExecProviderConfig != nil:
				// An exec plugin the platform team allowlisted (Kubeconfig mode): Argo CD runs it.
				modes["exec"]++
				if cluster.Config.ExecProviderConfig.Command == "" || cluster.Config.ExecProviderConfig.APIVersion == "" {
					t.Errorf("execProviderConfig = %+v", cluster.Config.ExecProviderConfig)
				}
			default:
				t.Error("config carries neither a bearer token, a client certificate nor an allowlisted exec plugin")
			}

			cfg, err := cluster.RawRestConfig()
			if err != nil {
				t.Fatalf("RawRestConfig: %v", err)
			}
			if modes["exec"] > 0 && cluster.Config.ExecProviderConfig != nil && (cfg.ExecProvider == nil || cfg.ExecProvider.Command != cluster.Config.ExecProviderConfig.Command) {
				t.Errorf("Argo CD's rest config does not run the exec plugin: %+v", cfg.ExecProvider)
			}
			if _, err := rest.TLSConfigFor(cfg); err != nil {
				t.Fatalf("Argo CD's rest config has unusable TLS material: %v", err)
			}
		})
	}
	if modes["token"] == 0 || modes["cert"] == 0 || modes["exec"] == 0 {
		t.Fatalf("want fixtures of every credential kind (token, cert, exec), have %v", modes)
	}
}

func hasPEM(data []byte, blockType string) bool {
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
