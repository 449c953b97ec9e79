package registrar

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
	"github.com/fleetbridge/fleetbridge/plugin"
)

// The plugin's fleet Store learns registered clusters from the metadata of the Secrets the registrar
// wrote and never holds their data: in one process with the registrar, whose cache holds whole owned
// Secrets, it receives only metadata; on its own, as the split chart runs it, the process never asks the
// API server for a Secret's data. Both read the server and Argo CD name the registrar published, and the
// cache's Secret options (owned only, in the Secret namespaces) confine the metadata informer too.
func TestPluginStoreHoldsNoSecretData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const argoNS, fluxNS, unlistedNS = "argocd-metadata", "tenant-metadata", "tenant-metadata-unlisted"
	for _, ns := range []string{argoNS, fluxNS, unlistedNS} {
		must(t, mgmt.EnsureNamespace(ctx, ns, nil))
	}
	labels := map[string]string{"plugin-store": "metadata"}
	w, err := mgmt.AddWorkload(ctx, "fleet-metadata", "md-1", testenv.ClusterOptions{Labels: labels})
	must(t, err)
	key := types.NamespacedName{Namespace: "fleet-metadata", Name: "md-1"}
	namespaces := Namespaces{Secrets: []string{argoNS, fluxNS}}
	rm := startManagerIn(t, namespaces)
	defer rm.stop(t)

	kubeconfigMode := fleetv1.Credentials{Mode: fleetv1.CredentialsKubeconfig}
	regs := []*fleetv1.Registration{
		{ObjectMeta: metav1.ObjectMeta{Name: "metadata-argo"}, Spec: fleetv1.RegistrationSpec{ClusterSelector: &metav1.LabelSelector{MatchLabels: labels},
			ArgoCD: &fleetv1.ArgoCDTarget{Namespace: argoNS, NameTemplate: "md-{{ .Name }}"}, Credentials: kubeconfigMode}},
		{ObjectMeta: metav1.ObjectMeta{Name: "metadata-flux"}, Spec: fleetv1.RegistrationSpec{ClusterSelector: &metav1.LabelSelector{MatchLabels: labels},
			Flux: &fleetv1.FluxTarget{Namespaces: []string{fluxNS}}, Credentials: kubeconfigMode}},
	}
	for _, reg := range regs {
		must(t, mgmt.Client.Create(ctx, reg))
		defer deleteRegistration(t, ctx, reg)
	}
	// Secrets the Store must never receive: one fleetbridge does not own beside its own, and one that
	// claims to be fleetbridge's where fleetbridge writes none.
	forged := owned.Record{Registration: "metadata-forged", Cluster: key, Output: owned.OutputArgoCD, Server: "https://forged:6443", ArgoCDName: "forged"}
	outside := []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: argoNS, Name: "hand-made"}, StringData: map[string]string{"token": "hand-made-token"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: unlistedNS, Name: "forged", Labels: forged.Labels(), Annotations: forged.Annotations()},
			StringData: map[string]string{"token": "forged-token"}},
	}
	for _, s := range outside {
		must(t, mgmt.Client.Create(ctx, s))
		defer func() { _ = mgmt.Client.Delete(context.Background(), s) }()
	}

	want := map[string]fleet.Cluster{
		"metadata-argo": {ArgoCDName: "md-md-1", Server: w.Server()},
		"metadata-flux": {Server: w.Server()},
	}
	registered := func(store *fleet.Store) func() error {
		return func() error {
			got := map[string]fleet.Cluster{}
			for _, c := range store.Snapshot().Clusters {
				if c.Namespace == key.Namespace && c.Name == key.Name {
					got[c.Registration] = c
				}
			}
			if len(got) != len(want) {
				return fmt.Errorf("clusters by Registration %v", got)
			}
			for reg, c := range want {
				if got[reg].Server != c.Server || got[reg].ArgoCDName != c.ArgoCDName {
					return fmt.Errorf("%s: server %q, Argo CD name %q; want %q, %q", reg, got[reg].Server, got[reg].ArgoCDName, c.Server, c.ArgoCDName)
				}
			}
			return nil
		}
	}

	t.Run("with the registrar", func(t *testing.T) {
		rec := &recordingCache{Cache: rm.mgr.GetCache(), scheme: rm.mgr.GetScheme()}
		store := fleet.NewStore()
		must(t, store.Watch(ctx, rec))
		testenv.Eventually(t, 30*time.Second, "the Store's clusters", registered(store))
		rec.check(t, []string{argoNS + "/" + argoSecretName(key), fluxNS + "/fleet-metadata.md-1.kubeconfig"})
		// The registrar's own informer holds whole owned Secrets, in the same cache.
		full := &corev1.SecretList{}
		must(t, rm.mgr.GetClient().List(ctx, full, client.InNamespace(argoNS), client.HasLabels{owned.LabelRegistration}))
		if len(full.Items) != 1 || len(full.Items[0].Data) == 0 {
			t.Fatalf("the registrar's cache holds %d owned Secrets in %s, or none with data", len(full.Items), argoNS)
		}
		// The metadata informer the Store reads is confined as the registrar's is.
		metas := &metav1.PartialObjectMetadataList{}
		metas.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
		must(t, rm.mgr.GetClient().List(ctx, metas))
		for _, m := range metas.Items {
			if !owned.IsOwned(m.Labels) || !namespaces.SecretsAllowed(m.Namespace) || len(m.ManagedFields) > 0 {
				t.Errorf("the metadata cache holds %s/%s (labels %v, %d managedFields entries)", m.Namespace, m.Name, m.Labels, len(m.ManagedFields))
			}
		}
	})

	t.Run("on its own", func(t *testing.T) {
		secretReads := &secretRequestLog{}
		cfg := rest.CopyConfig(mgmt.Config)
		cfg.Wrap(secretReads.wrap)
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme:                 testenv.NewScheme(),
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			Cache:                  cache.Options{ByObject: CacheByObject(namespaces)},
			Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		})
		must(t, err)
		pluginCtx, stop := context.WithCancel(ctx)
		store, err := plugin.Setup(pluginCtx, mgr, plugin.Options{Addr: testenv.FreeAddr(t), Token: "metadata-test-token", RefreshInterval: time.Second})
		must(t, err)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(pluginCtx) }()
		defer func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("plugin manager: %v", err)
			}
		}()
		testenv.Eventually(t, 30*time.Second, "the plugin's clusters", func() error {
			if !store.Synced() {
				return fmt.Errorf("not synced")
			}
			return registered(store)()
		})
		secretReads.check(t)
	})
}

// deleteRegistration deletes a Registration and waits until its finalizer has removed its Secrets.
func deleteRegistration(t *testing.T, ctx context.Context, reg *fleetv1.Registration) {
	t.Helper()
	must(t, client.IgnoreNotFound(mgmt.Client.Delete(ctx, reg)))
	testenv.Eventually(t, 30*time.Second, "Registration "+reg.Name+" gone", func() error {
		if err := mgmt.Client.Get(ctx, client.ObjectKeyFromObject(reg), &fleetv1.Registration{}); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
}

// recordingCache hands out the informers of a cache, recording every Secret-kind object their
// handlers deliver.
type recordingCache struct {
	cache.Cache
	scheme *runtime.Scheme

	mu        sync.Mutex
	delivered []runtime.Object
}

func (c *recordingCache) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	inf, err := c.Cache.GetInformer(ctx, obj, opts...)
	if err != nil {
		return nil, err
	}
	gvk, err := apiutil.GVKForObject(obj, c.scheme)
	if err != nil || gvk != corev1.SchemeGroupVersion.WithKind("Secret") {
		return inf, err
	}
	return &recordingInformer{Informer: inf, record: c.record}, nil
}

func (c *recordingCache) record(o any) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if obj, ok := o.(runtime.Object); ok {
		c.mu.Lock()
		c.delivered = append(c.delivered, obj)
		c.mu.Unlock()
	}
}

// check fails unless every Secret delivered was metadata only, wantSeen were among them, and nothing
// outside the cache's Secret options was.
func (c *recordingCache) check(t *testing.T, wantSeen []string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, o := range c.delivered {
		m, ok := o.(*metav1.PartialObjectMetadata)
		raw, _ := json.Marshal(o)
		if !ok || strings.Contains(string(raw), `"data":`) || strings.Contains(string(raw), `"stringData":`) {
			t.Errorf("the Store received a %T with data: %.300s", o, raw)
			continue
		}
		seen[m.Namespace+"/"+m.Name] = true
		if !owned.IsOwned(m.Labels) || m.Namespace == "tenant-metadata-unlisted" {
			t.Errorf("the Store received %s/%s, outside the cache's Secret options", m.Namespace, m.Name)
		}
	}
	for _, s := range wantSeen {
		if !seen[s] {
			t.Errorf("the Store did not receive %s (received %v)", s, seen)
		}
	}
}

type recordingInformer struct {
	cache.Informer
	record func(any)
}

func (i *recordingInformer) AddEventHandler(h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	return i.Informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { i.record(o); h.OnAdd(o, false) },
		UpdateFunc: func(old, o any) { i.record(o); h.OnUpdate(old, o) },
		DeleteFunc: func(o any) { i.record(o); h.OnDelete(o) },
	})
}

// secretRequestLog records the Accept header of every request for Secrets.
type secretRequestLog struct {
	mu       sync.Mutex
	requests []string
}

func (l *secretRequestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if strings.HasSuffix(req.URL.Path, "/secrets") || strings.Contains(req.URL.Path, "/secrets/") {
			l.mu.Lock()
			l.requests = append(l.requests, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery+" Accept: "+req.Header.Get("Accept"))
			l.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

// check fails unless Secrets were read, and every read asked for metadata only.
func (l *secretRequestLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.requests) == 0 {
		t.Fatal("no request for Secrets was seen; the check proves nothing")
	}
	for _, r := range l.requests {
		accept := r[strings.Index(r, " Accept: ")+len(" Accept: "):]
		if !strings.HasPrefix(r, http.MethodGet+" ") || !strings.Contains(strings.SplitN(accept, ",", 2)[0], "as=PartialObjectMetadata") {
			t.Errorf("a request for Secrets that is not a metadata read: %s", r)
		}
	}
}
