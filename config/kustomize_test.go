package config

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// `kubectl apply -k config/default`: kustomize's own builder renders the base, and a real API server
// accepts every object (server-side dry-run, CRDs first).
func TestKustomizeDefaultApplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "default")
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeObjects(t, manifest)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	for kind, n := range map[string]int{"CustomResourceDefinition": 2, "Deployment": 1, "ClusterRole": 1, "ServiceAccount": 1, "ConfigMap": 1, "Service": 2} {
		if kinds[kind] != n {
			t.Errorf("%d %s objects, want %d", kinds[kind], kind, n)
		}
	}
	if ns := argoNamespace(objs); ns != "argocd" {
		t.Errorf("the plugin ConfigMap landed in %q, not in Argo CD's namespace", ns)
	}
	dryRunApply(t, ctx, "config/default", objs)
	checkWorkloads(t, objs)
}
