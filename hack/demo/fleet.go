package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// The demo fleet. The report and the test find everything by these names.
const (
	capiNamespace     = "fleet"
	argoNamespace     = "argocd"
	fluxNamespace     = "team-a"
	workloadNamespace = "fleet-workloads"
	registrationName  = "demo"
)

// demoClusters each get their own workload API server; both are env=prod, so one Registration selects
// them and a region override can tell them apart.
var demoClusters = []struct{ name, region string }{{"edge-eu", "eu"}, {"edge-us", "us"}}

// demoWorkloads are the Workloads' names; each goes to both clusters.
var demoWorkloads = []string{"podinfo", "guestbook"}

func createFleet(ctx context.Context, mgmt *testenv.Management) error {
	for _, ns := range []string{argoNamespace, fluxNamespace, workloadNamespace} {
		if err := mgmt.EnsureNamespace(ctx, ns, nil); err != nil {
			return err
		}
	}
	for _, c := range demoClusters {
		step("starting the workload API server of CAPI Cluster %s/%s", capiNamespace, c.name)
		labels := map[string]string{"env": "prod", "region": c.region}
		if _, err := mgmt.AddWorkload(ctx, capiNamespace, c.name, testenv.ClusterOptions{Labels: labels}); err != nil {
			return err
		}
	}
	step("creating Registration %s and Workloads %s/%v", registrationName, workloadNamespace, demoWorkloads)
	for _, obj := range []client.Object{demoRegistration(), podinfo(), guestbook()} {
		if err := mgmt.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// degradedPair is the pair whose Application the demo reports Degraded, so the fleet page and the
// Workload status have something to show.
var degradedPair = struct{ workload, cluster string }{"podinfo", "edge-us"}

// writeApplications writes, for every pair, the Application an ApplicationSet would generate (with the
// fleetbridge.io/pair label) and the status Argo CD's application controller would write: Synced and
// Healthy, except degradedPair's. Neither Argo CD controller runs in the demo. It waits until the
// Workloads' status shows them.
func writeApplications(ctx context.Context, c client.Client) error {
	step("writing the Applications an ApplicationSet would generate, with the status Argo CD would report (%s on %s Degraded)", degradedPair.workload, degradedPair.cluster)
	for _, w := range demoWorkloads {
		for _, cl := range demoClusters {
			health := map[string]any{"status": "Healthy"}
			if w == degradedPair.workload && cl.name == degradedPair.cluster {
				health = map[string]any{"status": "Degraded", "message": "Deployment podinfo exceeded its progress deadline"}
			}
			app := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
				"metadata": map[string]any{"namespace": argoNamespace, "name": w + "-" + cl.name,
					"labels": map[string]any{"fleetbridge.io/pair": fleet.PairName(workloadNamespace, w, capiNamespace, cl.name)}},
				"spec": map[string]any{
					"project":     "default",
					"source":      map[string]any{"repoURL": "https://example.invalid/" + w, "path": w, "targetRevision": "HEAD"},
					"destination": map[string]any{"name": capiNamespace + "." + cl.name, "namespace": w},
				},
				"status": map[string]any{"sync": map[string]any{"status": "Synced", "revision": "6.8.0"}, "health": health},
			}}
			if err := c.Create(ctx, app); err != nil {
				return fmt.Errorf("create Application %s: %w", app.GetName(), err)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		list := &fleetv1.WorkloadList{}
		if err := c.List(ctx, list); err != nil {
			return err
		}
		shown := 0
		for _, w := range list.Items {
			if f := w.Status.Fleet; f != nil && int(f.Healthy+f.Degraded) == len(demoClusters) {
				shown++
			}
		}
		if shown == len(demoWorkloads) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Workloads' status does not show the Applications after 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// demoRegistration is examples/argocd/registration.yaml and examples/flux/registration.yaml in one.
func demoRegistration() *fleetv1.Registration {
	return &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: registrationName},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
			Labels:          fleetv1.LabelPolicy{Propagate: []string{"env", "region"}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: argoNamespace, NameTemplate: "{{ .Namespace }}.{{ .Name }}"},
			Flux:            &fleetv1.FluxTarget{Namespaces: []string{fluxNamespace}},
			Credentials: fleetv1.Credentials{
				Mode:           fleetv1.CredentialsServiceAccountToken,
				TokenTTL:       &metav1.Duration{Duration: time.Hour},
				ServiceAccount: fleetv1.ServiceAccountReference{Namespace: "kube-system", Name: "fleetbridge-demo"},
			},
		},
	}
}

// podinfo is a Helm chart with values the EU cluster overrides.
func podinfo() *fleetv1.Workload {
	return &fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: workloadNamespace, Name: "podinfo"},
		Spec: fleetv1.WorkloadSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
			Source:          fleetv1.WorkloadSource{RepoURL: "https://stefanprodan.github.io/podinfo", Chart: "podinfo", TargetRevision: "6.8.0"},
			Destination:     fleetv1.WorkloadDestination{Namespace: "podinfo"},
			Values:          &apiextensionsv1.JSON{Raw: []byte(`{"replicaCount":2,"ingress":{"enabled":true,"className":"nginx"}}`)},
			Overrides: []fleetv1.WorkloadOverride{{
				ClusterSelector: metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
				Values:          &apiextensionsv1.JSON{Raw: []byte(`{"replicaCount":3,"ingress":{"className":"nginx-eu"}}`)},
			}},
		},
	}
}

// guestbook is a Git path that goes to every registered cluster.
func guestbook() *fleetv1.Workload {
	return &fleetv1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: workloadNamespace, Name: "guestbook"},
		Spec: fleetv1.WorkloadSpec{
			ClusterSelector: &metav1.LabelSelector{},
			Source:          fleetv1.WorkloadSource{RepoURL: "https://github.com/argoproj/argocd-example-apps", Path: "guestbook", TargetRevision: "HEAD"},
			Destination:     fleetv1.WorkloadDestination{Namespace: "guestbook"},
		},
	}
}

// waitRegistered polls until everything the report shows is there, so the report is never a snapshot of
// a half-registered fleet. The error names what was still missing.
func waitRegistered(ctx context.Context, c client.Client, plugin pluginClient, timeout time.Duration) error {
	step("waiting up to %s for fleetbridge to register both clusters", timeout)
	deadline := time.Now().Add(timeout)
	for {
		missing := fleetMissing(ctx, c, plugin)
		switch {
		case missing == "":
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return fmt.Errorf("fleetbridge did not register the demo fleet within %s: %s", timeout, missing)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// fleetMissing is what is not ready yet, or "".
func fleetMissing(ctx context.Context, c client.Client, plugin pluginClient) string {
	reg := &fleetv1.Registration{}
	if err := c.Get(ctx, client.ObjectKey{Name: registrationName}, reg); err != nil {
		return err.Error()
	}
	ready := meta.FindStatusCondition(reg.Status.Conditions, fleetv1.ReadyCondition)
	if ready == nil || ready.Status != metav1.ConditionTrue || reg.Status.Registered != int32(len(demoClusters)) {
		state := "no Ready condition yet"
		if ready != nil {
			state = fmt.Sprintf("Ready=%s %s %s", ready.Status, ready.Reason, ready.Message)
		}
		msg := fmt.Sprintf("Registration %s has %d of %d clusters registered (%s)", registrationName, reg.Status.Registered, len(demoClusters), state)
		for _, f := range reg.Status.Failures {
			msg += fmt.Sprintf("; %s/%s: %s %s", f.Namespace, f.Name, f.Reason, f.Message)
		}
		return msg
	}
	for _, out := range []struct{ namespace, output string }{{argoNamespace, owned.OutputArgoCD}, {fluxNamespace, owned.OutputFlux}} {
		secrets, err := ownedSecrets(ctx, c, out.namespace, out.output)
		if err != nil {
			return err.Error()
		}
		if len(secrets) != len(demoClusters) {
			return fmt.Sprintf("%d of %d %s Secrets in namespace %s", len(secrets), len(demoClusters), out.output, out.namespace)
		}
	}
	answer, err := plugin.getParams(ctx)
	if err != nil {
		return err.Error()
	}
	if want := len(demoClusters) * len(demoWorkloads); len(answer.Output.Parameters) != want {
		return fmt.Sprintf("the plugin answers %d pairs, want %d", len(answer.Output.Parameters), want)
	}
	return ""
}

// ownedSecrets are the Secrets the demo Registration wrote in namespace for one output, sorted by name.
func ownedSecrets(ctx context.Context, c client.Client, namespace, output string) ([]corev1.Secret, error) {
	list := &corev1.SecretList{}
	err := c.List(ctx, list, client.InNamespace(namespace),
		client.MatchingLabels{owned.LabelRegistration: registrationName, owned.LabelOutput: output})
	slices.SortFunc(list.Items, func(a, b corev1.Secret) int { return strings.Compare(a.Name, b.Name) })
	return list.Items, err
}
