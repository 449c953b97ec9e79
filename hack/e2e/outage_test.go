package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

const (
	outageArgoNS   = "argocd-outage"
	outageCAPINS   = "fleet-outage"
	outageWorkload = "outage-apps/webshop"
)

// An outage never costs an Application: with Argo CD's real ApplicationSet controller and its default
// sync policy (deletes allowed), a registered workload cluster whose API server goes down keeps its
// Application (the same object, now labelled ready=false), while an ApplicationSet that asks for
// readyOnly loses it, which shows the test sees a deletion when there is one. A new cluster that was
// never reachable gets no Application until its API server answers, and then gets it within 30 s.
func TestPluginGeneratorOutageKeepsApplications(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := mgmt.Client
	labels := map[string]string{"e2e": "outage"}
	_, err := mgmt.AddWorkload(ctx, outageCAPINS, "eu-1", testenv.ClusterOptions{Labels: labels})
	must(t, err)
	down, err := mgmt.AddWorkload(ctx, outageCAPINS, "eu-2", testenv.ClusterOptions{Labels: labels})
	must(t, err)

	addr := testenv.FreeAddr(t)
	appset, err := mgmt.StartApplicationSetController(ctx, outageArgoNS, map[string][]byte{"fleetbridge.plugin.token": []byte(pluginToken)})
	must(t, err)
	defer func() {
		if out := appset.Stop(); t.Failed() {
			t.Logf("ApplicationSet controller log:\n%s", tail(out, 80))
		}
	}()
	// A short resync, so the registrar probes a registered cluster again within seconds of its outage
	// instead of at the 10-minute default.
	fb := startFleetbridge(t, addr, "--resync=2s")
	defer func() {
		if out := fb.Stop(); t.Failed() {
			t.Logf("fleetbridge log:\n%s", tail(out, 80))
		}
	}()

	must(t, c.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: outageArgoNS, Name: "fleetbridge-plugin"},
		Data:       map[string]string{"baseUrl": "http://" + addr, "token": "$fleetbridge.plugin.token", "requestTimeout": "10"},
	}))
	must(t, c.Create(ctx, &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: "outage-fleet"},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: labels},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: outageArgoNS},
			Credentials:     fleetv1.Credentials{ServiceAccount: fleetv1.ServiceAccountReference{Name: "fleetbridge-outage-e2e"}},
		},
	}))
	ns, name, _ := strings.Cut(outageWorkload, "/")
	must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	must(t, c.Create(ctx, &fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: fleetv1.WorkloadSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: labels},
			Registration:    "outage-fleet",
			Source:          fleetv1.WorkloadSource{RepoURL: "https://github.com/argoproj/argocd-example-apps", Path: "guestbook", TargetRevision: "HEAD"},
			Destination:     fleetv1.WorkloadDestination{Namespace: "webshop"},
		},
	}))
	// "keep" uses the default parameters; "ready" opts into readyOnly.
	must(t, c.Create(ctx, outageAppSet("keep", nil)))
	must(t, c.Create(ctx, outageAppSet("ready", map[string]any{"readyOnly": true})))

	want := func(appSets map[string][]string) map[string]string {
		out := map[string]string{}
		for appSet, clusters := range appSets {
			for _, cl := range clusters {
				out["webshop-"+cl+"-"+appSet] = "name:" + outageCAPINS + "." + cl
			}
		}
		return out
	}
	start := time.Now()
	expectApplicationsIn(t, ctx, outageArgoNS, want(map[string][]string{"keep": {"eu-1", "eu-2"}, "ready": {"eu-1", "eu-2"}}))
	t.Logf("Applications for both clusters %.1fs after the ApplicationSets were created", time.Since(start).Seconds())

	t.Run("an outage deletes no Application", func(t *testing.T) {
		before := applicationUIDs(t, ctx)
		keptApp := "webshop-eu-2-keep"
		if got := applicationLabel(t, ctx, keptApp, "e2e/ready"); got != "true" {
			t.Fatalf("Application %s is labelled ready=%q before the outage, want true", keptApp, got)
		}

		start := time.Now()
		must(t, down.Stop())
		secret := argoSecretOf(t, ctx, "eu-2")
		testenv.Eventually(t, 30*time.Second, "the registrar marks eu-2's Argo CD Secret unreachable", func() error {
			s := &corev1.Secret{}
			if err := mgmt.Client.Get(ctx, secret, s); err != nil {
				return err
			}
			if s.Annotations[owned.AnnotationReachable] != "false" {
				return fmt.Errorf("%s is %q", owned.AnnotationReachable, s.Annotations[owned.AnnotationReachable])
			}
			return nil
		})
		marked := time.Since(start)
		// Whatever fleetbridge answers for the down cluster now is what Argo CD regenerates from: ready
		// false, or (as a regression) no pair at all, which the Application checks below then catch.
		var pair *answerPair
		testenv.Eventually(t, 10*time.Second, "fleetbridge's answer stops calling eu-2 ready", func() error {
			pairs, err := pluginAnswer(ctx, addr, "keep", map[string]any{"workloads": []any{outageWorkload}})
			if err != nil {
				return err
			}
			pair = pairNamed(pairs, "eu-2")
			if pair != nil && pair.Cluster.Ready {
				return fmt.Errorf("eu-2 is still ready")
			}
			return nil
		})
		if pair == nil {
			t.Errorf("fleetbridge's answer with default parameters has no pair for the down cluster eu-2, want it kept with ready: false")
		}
		answered := time.Since(start)

		refreshAppSets(t, ctx, "keep", "ready")
		t.Logf("eu-2 stopping: Secret marked after %.1fs, answer ready: false after %.1fs, both ApplicationSets regenerated after %.1fs",
			marked.Seconds(), answered.Seconds(), time.Since(start).Seconds())

		// readyOnly drops the down cluster: the test tells a deletion from none.
		expectApplicationsIn(t, ctx, outageArgoNS, want(map[string][]string{"keep": {"eu-1", "eu-2"}, "ready": {"eu-1"}}))
		after := applicationUIDs(t, ctx)
		for _, app := range []string{"webshop-eu-1-keep", keptApp, "webshop-eu-1-ready"} {
			if after[app] != before[app] {
				t.Errorf("Application %s was recreated during the outage: UID %s, was %s", app, after[app], before[app])
			}
		}
		// The kept Application is the regenerated one: Argo CD updated it from the ready: false answer.
		if got := applicationLabel(t, ctx, keptApp, "e2e/ready"); got != "false" {
			t.Errorf("Application %s is labelled ready=%q during the outage, want false", keptApp, got)
		}
	})

	t.Run("a never-ready cluster gets no Application until it is ready", func(t *testing.T) {
		// The Cluster and its kubeconfig Secret exist and name an address where nothing listens yet.
		deadAddr := testenv.FreeAddr(t)
		must(t, mgmt.PublishCluster(ctx, outageCAPINS, "eu-3", "https://"+deadAddr, notYetServingKubeconfig(deadAddr), testenv.ClusterOptions{Labels: labels}))
		testenv.Eventually(t, 30*time.Second, "the Registration reports eu-3 unreachable", func() error {
			reg := &fleetv1.Registration{}
			if err := mgmt.Client.Get(ctx, types.NamespacedName{Name: "outage-fleet"}, reg); err != nil {
				return err
			}
			for _, f := range reg.Status.Failures {
				if f.Namespace == outageCAPINS && f.Name == "eu-3" && f.Reason == fleetv1.ReasonClusterUnreachable {
					return nil
				}
			}
			return fmt.Errorf("failures are %+v", reg.Status.Failures)
		})
		if s := argoSecretsOf(t, ctx, "eu-3"); len(s) != 0 {
			t.Fatalf("the never-reachable eu-3 has Argo CD Secret %s", s[0].Name)
		}
		refreshAppSets(t, ctx, "keep", "ready")
		apps := applicationUIDs(t, ctx)
		for _, app := range []string{"webshop-eu-3-keep", "webshop-eu-3-ready"} {
			if _, ok := apps[app]; ok {
				t.Fatalf("the never-reachable eu-3 has Application %s", app)
			}
		}

		// Its API server comes up, and the kubeconfig Secret names it.
		up, err := testenv.StartWorkload(outageCAPINS, "eu-3")
		must(t, err)
		t.Cleanup(func() { _ = up.Stop() })
		cluster := &clusterv1.Cluster{}
		must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: outageCAPINS, Name: "eu-3"}, cluster))
		base := cluster.DeepCopy()
		host, port, _ := net.SplitHostPort(strings.TrimPrefix(up.Server(), "https://"))
		p, _ := strconv.Atoi(port)
		cluster.Spec.ControlPlaneEndpoint = clusterv1.APIEndpoint{Host: host, Port: int32(p)}
		must(t, mgmt.Client.Patch(ctx, cluster, client.MergeFrom(base)))
		start := time.Now()
		must(t, mgmt.WriteKubeconfigSecret(ctx, outageCAPINS, "eu-3", up.AdminKubeConfig))
		// No refresh by the test: fleetbridge nudges the ApplicationSets whose answer grew.
		deadline := time.Now().Add(30 * time.Second)
		for {
			apps := applicationUIDs(t, ctx)
			_, keep := apps["webshop-eu-3-keep"]
			_, ready := apps["webshop-eu-3-ready"]
			if keep && ready {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("30 s after eu-3's API server answered, its Applications are missing (keep %v, ready %v)", keep, ready)
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("eu-3 had its Applications %.1fs after its kubeconfig named a serving API server", time.Since(start).Seconds())
	})
}

// outageAppSet is a plugin-generator ApplicationSet with Argo CD's default applicationsSync policy, so
// an answer without a cluster deletes that cluster's Application. Its Applications carry the cluster's
// readiness as a label, to show which answer Argo CD applied last.
func outageAppSet(name string, extra map[string]any) *unstructured.Unstructured {
	params := map[string]any{"workloads": []any{outageWorkload}}
	for k, v := range extra {
		params[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
		"metadata": map[string]any{"namespace": outageArgoNS, "name": name},
		"spec": map[string]any{
			"goTemplate": true,
			"generators": []any{map[string]any{"plugin": map[string]any{
				"configMapRef": map[string]any{"name": "fleetbridge-plugin"},
				"input":        map[string]any{"parameters": params},
			}}},
			// Deletes stay allowed; no application-controller runs here, so the Applications are kept
			// free of the resources finalizer, which would hold up their deletion.
			"syncPolicy": map[string]any{"preserveResourcesOnDeletion": true},
			"template": map[string]any{
				"metadata": map[string]any{
					"name":   "{{ .workload.name }}-{{ .cluster.name }}-" + name,
					"labels": map[string]any{"e2e/ready": "{{ .cluster.ready }}"},
				},
				"spec": map[string]any{
					"project":     "default",
					"source":      map[string]any{"repoURL": "https://github.com/argoproj/argocd-example-apps", "path": "{{ .workload.path }}", "targetRevision": "HEAD"},
					"destination": map[string]any{"name": "{{ .cluster.argocdName }}", "namespace": "{{ .workload.destinationNamespace }}"},
				},
			},
		},
	}}
}

// refreshAppSets sets Argo CD's refresh annotation on each ApplicationSet and waits until Argo CD removes
// it, which it does only after a reconcile that generated from a fresh plugin answer and applied it
// (creates, updates and deletes).
func refreshAppSets(t *testing.T, ctx context.Context, names ...string) {
	t.Helper()
	for _, name := range names {
		appSet := &unstructured.Unstructured{}
		appSet.SetAPIVersion("argoproj.io/v1alpha1")
		appSet.SetKind("ApplicationSet")
		appSet.SetNamespace(outageArgoNS)
		appSet.SetName(name)
		refresh := []byte(`{"metadata":{"annotations":{"argocd.argoproj.io/application-set-refresh":"true"}}}`)
		must(t, mgmt.Client.Patch(ctx, appSet, client.RawPatch(types.MergePatchType, refresh)))
	}
	for _, name := range names {
		testenv.Eventually(t, 30*time.Second, "Argo CD reconciles ApplicationSet "+name, func() error {
			appSet := &unstructured.Unstructured{}
			appSet.SetAPIVersion("argoproj.io/v1alpha1")
			appSet.SetKind("ApplicationSet")
			if err := mgmt.Client.Get(ctx, types.NamespacedName{Namespace: outageArgoNS, Name: name}, appSet); err != nil {
				return err
			}
			if _, ok := appSet.GetAnnotations()["argocd.argoproj.io/application-set-refresh"]; ok {
				return fmt.Errorf("the refresh annotation is still set")
			}
			return nil
		})
	}
}

func applicationUIDs(t *testing.T, ctx context.Context) map[string]types.UID {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("argoproj.io/v1alpha1")
	list.SetKind("ApplicationList")
	must(t, mgmt.Client.List(ctx, list, client.InNamespace(outageArgoNS)))
	out := map[string]types.UID{}
	for _, app := range list.Items {
		out[app.GetName()] = app.GetUID()
	}
	return out
}

func applicationLabel(t *testing.T, ctx context.Context, name, key string) string {
	t.Helper()
	app := &unstructured.Unstructured{}
	app.SetAPIVersion("argoproj.io/v1alpha1")
	app.SetKind("Application")
	must(t, mgmt.Client.Get(ctx, types.NamespacedName{Namespace: outageArgoNS, Name: name}, app))
	return app.GetLabels()[key]
}

func argoSecretsOf(t *testing.T, ctx context.Context, cluster string) []corev1.Secret {
	t.Helper()
	return argoSecretsOfIn(t, ctx, outageArgoNS, outageCAPINS, cluster)
}

// argoSecretsOfIn are the owned Argo CD Secrets in argoNS of the CAPI Cluster capiNS/cluster.
func argoSecretsOfIn(t *testing.T, ctx context.Context, argoNS, capiNS, cluster string) []corev1.Secret {
	t.Helper()
	list := &corev1.SecretList{}
	must(t, mgmt.Client.List(ctx, list, client.InNamespace(argoNS), client.MatchingLabels{
		owned.LabelClusterNamespace: capiNS, owned.LabelClusterName: cluster, owned.LabelOutput: owned.OutputArgoCD,
	}))
	return list.Items
}

func argoSecretOf(t *testing.T, ctx context.Context, cluster string) types.NamespacedName {
	t.Helper()
	secrets := argoSecretsOf(t, ctx, cluster)
	if len(secrets) != 1 {
		t.Fatalf("%d Argo CD Secrets for %s, want 1", len(secrets), cluster)
	}
	return client.ObjectKeyFromObject(&secrets[0])
}

// notYetServingKubeconfig is a CAPI kubeconfig for a control plane that does not answer yet.
func notYetServingKubeconfig(addr string) []byte {
	return []byte(`apiVersion: v1
kind: Config
clusters:
- name: eu-3
  cluster:
    server: https://` + addr + `
users:
- name: eu-3-admin
  user:
    token: not-issued-yet
contexts:
- name: eu-3
  context:
    cluster: eu-3
    user: eu-3-admin
current-context: eu-3
`)
}

type answerPair struct {
	Cluster struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	} `json:"cluster"`
}

// pluginAnswer asks fleetbridge's plugin server what Argo CD would get for these parameters.
func pluginAnswer(ctx context.Context, addr, appSet string, params map[string]any) ([]answerPair, error) {
	body, err := json.Marshal(map[string]any{"applicationSetName": appSet, "input": map[string]any{"parameters": params}})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/v1/getparams.execute", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pluginToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("plugin answered %s", resp.Status)
	}
	var answer struct {
		Output struct {
			Parameters []answerPair `json:"parameters"`
		} `json:"output"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return nil, err
	}
	return answer.Output.Parameters, nil
}

func pairNamed(pairs []answerPair, cluster string) *answerPair {
	for i := range pairs {
		if pairs[i].Cluster.Name == cluster {
			return &pairs[i]
		}
	}
	return nil
}
