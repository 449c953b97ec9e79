package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/argocd"
	"github.com/fleetbridge/fleetbridge/internal/flux"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// sampleInput is what an ApplicationSet's plugin generator sends for `input.parameters.clusterSelector: env=prod`.
const sampleInput = `{"applicationSetName":"demo","input":{"parameters":{"clusterSelector":"env=prod"}}}`

// pluginClient asks the running plugin server what Argo CD would get.
type pluginClient struct{ baseURL, token string }

type pluginAnswer struct {
	Output struct {
		Parameters []json.RawMessage `json:"parameters"`
	} `json:"output"`
	raw []byte
}

func (p pluginClient) getParams(ctx context.Context) (pluginAnswer, error) {
	var answer pluginAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.baseURL+"/api/v1/getparams.execute", strings.NewReader(sampleInput))
	if err != nil {
		return answer, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return answer, fmt.Errorf("the plugin server does not answer: %w", err)
	}
	defer resp.Body.Close()
	if answer.raw, err = io.ReadAll(resp.Body); err != nil {
		return answer, err
	}
	if resp.StatusCode != http.StatusOK {
		return answer, fmt.Errorf("the plugin answered %s: %s", resp.Status, bytes.TrimSpace(answer.raw))
	}
	return answer, json.Unmarshal(answer.raw, &answer)
}

// report is the printed text. It remembers every credential it redacted, so it can refuse to print
// one that slipped through anywhere else.
type report struct {
	bytes.Buffer
	credentials []string
}

// credentialKeys hold credentials in Argo CD's `config` JSON and in kubeconfigs.
var credentialKeys = map[string]bool{
	"bearerToken": true, "password": true, "certData": true, "keyData": true,
	"token": true, "client-certificate-data": true, "client-key-data": true,
}

// caKeys hold a public CA bundle: no secret, but a kilobyte of base64 nobody reads.
var caKeys = map[string]bool{"caData": true, "certificate-authority-data": true}

// redact replaces credentials in decoded JSON or YAML, in place.
func (r *report) redact(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			switch {
			case credentialKeys[k]:
				if s, ok := x.(string); ok && s != "" {
					r.credentials = append(r.credentials, s)
				}
				v[k] = "<redacted>"
			case caKeys[k]:
				v[k] = "<CA bundle, elided>"
			default:
				v[k] = r.redact(x)
			}
		}
	case []any:
		for i, x := range v {
			v[i] = r.redact(x)
		}
	}
	return v
}

// printReport writes the report to w in one piece, once it holds no credential.
func printReport(ctx context.Context, w io.Writer, c client.Client, plugin pluginClient, opts options, files accessFiles, token string) error {
	r := &report{credentials: []string{token}}
	fmt.Fprintf(r, "\nfleetbridge demo: CAPI Clusters %s/%s and %s/%s, each with its own API server, registered by Registration %q.\n",
		capiNamespace, demoClusters[0].name, capiNamespace, demoClusters[1].name, registrationName)
	for _, section := range []func() error{
		func() error { return r.argoCDSecrets(ctx, c) },
		func() error { return r.fluxSecrets(ctx, c) },
		func() error { return r.statusTables(ctx, c) },
		func() error { return r.pluginAnswer(ctx, plugin) },
	} {
		if err := section(); err != nil {
			return err
		}
	}
	r.tryIt(plugin, opts, files)
	for _, cred := range r.credentials {
		if len(cred) >= 8 && strings.Contains(r.String(), cred) {
			return fmt.Errorf("the report would print a credential; refusing to print it")
		}
	}
	_, err := w.Write(r.Bytes())
	return err
}

func (r *report) argoCDSecrets(ctx context.Context, c client.Client) error {
	secrets, err := ownedSecrets(ctx, c, argoNamespace, owned.OutputArgoCD)
	if err != nil {
		return err
	}
	r.section("Argo CD cluster Secrets (namespace %s)", argoNamespace)
	for _, s := range secrets {
		var config any
		if err := json.Unmarshal(s.Data[argocd.KeyConfig], &config); err != nil {
			return fmt.Errorf("Secret %s/%s: config is not JSON: %w", s.Namespace, s.Name, err)
		}
		// Without SetEscapeHTML(false), "<redacted>" would print as "\u003credacted\u003e".
		var pretty bytes.Buffer
		enc := json.NewEncoder(&pretty)
		enc.SetEscapeHTML(false)
		enc.SetIndent("    ", "  ")
		if err := enc.Encode(r.redact(config)); err != nil {
			return err
		}
		project := string(s.Data[argocd.KeyProject])
		if project == "" {
			project = "(every project)"
		}
		fmt.Fprintf(r, "%s/%s\n", s.Namespace, s.Name)
		r.labels(s.Labels)
		fmt.Fprintf(r, "  name:    %s\n  server:  %s\n  project: %s\n  config:\n    %s\n",
			s.Data[argocd.KeyName], s.Data[argocd.KeyServer], project, bytes.TrimSpace(pretty.Bytes()))
	}
	return nil
}

func (r *report) fluxSecrets(ctx context.Context, c client.Client) error {
	secrets, err := ownedSecrets(ctx, c, fluxNamespace, owned.OutputFlux)
	if err != nil {
		return err
	}
	r.section("Flux kubeconfig Secrets (namespace %s, key %q; a Kustomization uses spec.kubeConfig.secretRef)", fluxNamespace, flux.KubeconfigKey)
	for _, s := range secrets {
		var kubeconfig any
		if err := yaml.Unmarshal(s.Data[flux.KubeconfigKey], &kubeconfig); err != nil {
			return fmt.Errorf("Secret %s/%s: kubeconfig is not YAML: %w", s.Namespace, s.Name, err)
		}
		out, err := yaml.Marshal(r.redact(kubeconfig))
		if err != nil {
			return err
		}
		fmt.Fprintf(r, "%s/%s\n", s.Namespace, s.Name)
		r.labels(s.Labels)
		fmt.Fprintf(r, "  %s:\n    %s\n", flux.KubeconfigKey, strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n    "))
	}
	return nil
}

func (r *report) pluginAnswer(ctx context.Context, plugin pluginClient) error {
	answer, err := plugin.getParams(ctx)
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, answer.raw, "", "  "); err != nil {
		return err
	}
	r.section("The plugin's answer to an ApplicationSet plugin generator")
	fmt.Fprintf(r, "POST %s/api/v1/getparams.execute\n%s\n\n%s", plugin.baseURL, sampleInput, pretty.String())
	return nil
}

// tryIt says how to reach everything, with commands to copy; the token stays in its file.
func (r *report) tryIt(plugin pluginClient, opts options, files accessFiles) {
	r.section("Try it")
	bearer := fmt.Sprintf(`-H "Authorization: Bearer $(cat %s)"`, files.pluginToken)
	fmt.Fprintf(r, "Plugin server (its bearer token is in %s):\n", files.pluginToken)
	fmt.Fprintf(r, "  curl -s %s -d '%s' %s/api/v1/getparams.execute\n", bearer, sampleInput, plugin.baseURL)
	fmt.Fprintf(r, "  curl -s %s '%s/api/v1/flux/inputs?clusterSelector=region%%3Deu'\n", bearer, plugin.baseURL)
	fmt.Fprintf(r, "Metrics:  %s\n", endpoint(opts.metricsAddr, "/metrics", " | grep ^fleetbridge_"))
	fmt.Fprintf(r, "Health:   %s\n", endpoint(opts.probeAddr, "/readyz", ""))
	fmt.Fprintf(r, "Fleet page (what runs where): http://%s/\n", opts.pageAddr)
	fmt.Fprintf(r, "The management API server:\n  export KUBECONFIG=%s\n", files.kubeconfig)
	fmt.Fprintf(r, "  kubectl get registrations,workloads -A\n  kubectl get secrets -n %s -l %s=%s\n\n",
		argoNamespace, argocd.SecretTypeLabel, argocd.SecretTypeCluster)
}

// statusTables are what `kubectl get registrations` and `kubectl get workloads -A` show.
func (r *report) statusTables(ctx context.Context, c client.Client) error {
	regs := &fleetv1.RegistrationList{}
	if err := c.List(ctx, regs); err != nil {
		return err
	}
	r.section("kubectl get registrations -o wide")
	tw := tabwriter.NewWriter(r, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMODE\tSELECTED\tREGISTERED\tFAILING\tREADY\tREASON")
	for _, reg := range regs.Items {
		status, reason := readyOf(reg.Status.Conditions)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", reg.Name, reg.Spec.Credentials.Mode,
			reg.Status.Selected, reg.Status.Registered, reg.Status.Failing, status, reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	workloads := &fleetv1.WorkloadList{}
	if err := c.List(ctx, workloads); err != nil {
		return err
	}
	r.section("kubectl get workloads -A")
	tw = tabwriter.NewWriter(r, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tREPO\tPATH\tCHART\tCLUSTERS\tHEALTHY\tREVISION\tREADY")
	for _, wl := range workloads.Items {
		src := wl.Spec.Source
		healthy, revision := "", ""
		if f := wl.Status.Fleet; f != nil {
			healthy, revision = fmt.Sprint(f.Healthy), f.Revision
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", wl.Namespace, wl.Name, src.RepoURL, src.Path, src.Chart,
			wl.Status.MatchedClusters, healthy, revision, wl.Status.Summary)
	}
	return tw.Flush()
}

func readyOf(conditions []metav1.Condition) (status, reason string) {
	if c := meta.FindStatusCondition(conditions, fleetv1.ReadyCondition); c != nil {
		return string(c.Status), c.Reason
	}
	return "Unknown", ""
}

func (r *report) section(format string, args ...any) {
	fmt.Fprintf(r, "\n== "+format+" ==\n", args...)
}

func (r *report) labels(l map[string]string) {
	fmt.Fprintln(r, "  labels:")
	for _, k := range slices.Sorted(maps.Keys(l)) {
		fmt.Fprintf(r, "    %s: %s\n", k, l[k])
	}
}

// endpoint is a ready-to-copy curl command, or why there is none.
func endpoint(addr, path, pipe string) string {
	if addr == "0" || addr == "" {
		return "disabled"
	}
	return fmt.Sprintf("curl -s http://%s%s%s", addr, path, pipe)
}
