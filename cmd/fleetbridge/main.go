// Command fleetbridge runs the registrar (Cluster API clusters into Argo CD and Flux secrets) and the plugin
// server (cluster x workload pairs for ApplicationSets and ResourceSets) against the cluster its kubeconfig
// or in-cluster config points at. It only wires flags to those packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/clusterinventory"
	"github.com/fleetbridge/fleetbridge/internal/kubeconfig"
	"github.com/fleetbridge/fleetbridge/plugin"
	"github.com/fleetbridge/fleetbridge/registrar"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleetbridge:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr, probeAddr  string
		leaderElect             bool
		leaderElectionNamespace string
		leaderElectionID        string
		secretNamespaces        string
		clusterNamespaces       string
		profileNamespace        string
		enableRegistrar         bool
		enablePlugin            bool
		pluginOpts              = plugin.Options{}
		pluginConfigMaps        string
		pluginFluxURLs          string
		kubeQPS                 float64
		kubeBurst               int
		opts                    = registrar.DefaultOptions()
		workloadQPS             = float64(opts.WorkloadQPS)
		zapOpts                 = zap.Options{}
		memoryLimit             string
		allowedExecCommands     string
		deniedCIDRs             string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint (0 disables it).")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so only one replica reconciles.")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's namespace).")
	flag.StringVar(&leaderElectionID, "leader-election-id", "fleetbridge.fleetbridge.io", "Name of the leader election Lease (registrar and plugin Deployments run apart need two).")
	flag.StringVar(&secretNamespaces, "secret-namespaces", "", "Comma-separated namespaces fleetbridge writes Secrets in (Argo CD's and Flux's); empty means every namespace. Match it to the RBAC.")
	flag.StringVar(&profileNamespace, "cluster-profile-namespace", "", "Namespace to publish a ClusterProfile (multicluster.x-k8s.io/v1alpha1, SIG Multicluster's cluster inventory) in for each registered Cluster; empty publishes none. The ClusterProfile CRD must be installed.")
	flag.StringVar(&clusterNamespaces, "cluster-namespaces", "", "Comma-separated namespaces whose CAPI Clusters and kubeconfig Secrets are read; empty means every namespace. Match it to the RBAC.")
	flag.BoolVar(&enableRegistrar, "enable-registrar", true, "Run the registrar controllers.")
	flag.BoolVar(&enablePlugin, "enable-plugin", true, "Run the plugin server (Argo CD plugin generator, Flux ExternalService inputs).")
	flag.StringVar(&pluginOpts.Addr, "plugin-bind-address", ":8090", "Address of the plugin server.")
	flag.StringVar(&pluginOpts.TokensDir, "plugin-tokens-dir", "", "Directory of accepted bearer tokens, one per file (a mounted Secret); reloaded when it changes.")
	flag.StringVar(&pluginOpts.TenantsFile, "plugin-tenants-file", "", "File declaring the tenants whose scoped tokens --plugin-tokens-dir holds (a mounted ConfigMap); empty: every token has the full scope and must be named token or token.*.")
	flag.StringVar(&pluginConfigMaps, "plugin-configmaps", "fleetbridge-plugin", "Comma-separated Argo CD plugin ConfigMaps that point at this server, each name or name=tenant (the tenant whose token it carries), for the ApplicationSet refresher.")
	flag.Int64Var(&pluginOpts.MaxAnswerBytes, "max-answer-bytes", 0, "Largest plugin answer in bytes, refused before it is built; 0 means a quarter of --memory-limit, or 256 MiB without one.")
	flag.StringVar(&pluginFluxURLs, "plugin-flux-urls", "", "Comma-separated base URLs (http(s)://host[:port][/prefix]) at which Flux Operator reaches the plugin server, such as its Service's in-cluster names; ResourceSetInputProviders polling <base>/api/v1/flux/inputs are refreshed when their answer changes and warned about when it is over their spec.filter.limit.")
	flag.StringVar(&pluginOpts.PageAddr, "fleet-page-bind-address", "127.0.0.1:8092", "Listen address of the read-only fleet page (loopback: reach it with kubectl port-forward); empty serves none.")
	flag.StringVar(&pluginOpts.ArgoCDURL, "argocd-url", "", "Argo CD's UI URL, for the fleet page's links to Applications; empty links nowhere.")
	flag.DurationVar(&pluginOpts.RefreshInterval, "plugin-refresh-interval", 2*time.Second, "Shortest time between two refresh passes (ApplicationSets, Flux ResourceSetInputProviders).")
	flag.Float64Var(&kubeQPS, "kube-api-qps", 200, "Client QPS towards the management API server.")
	flag.IntVar(&kubeBurst, "kube-api-burst", 400, "Client burst towards the management API server.")
	flag.DurationVar(&opts.Resync, "resync", opts.Resync, "How often a registered cluster is probed again when nothing changes.")
	flag.DurationVar(&opts.ProbeTimeout, "workload-timeout", opts.ProbeTimeout, "Timeout of each call to a workload API server.")
	flag.Float64Var(&workloadQPS, "workload-api-qps", workloadQPS, "Client QPS towards each workload API server.")
	flag.IntVar(&opts.WorkloadBurst, "workload-api-burst", opts.WorkloadBurst, "Client burst towards each workload API server.")
	flag.IntVar(&opts.Workers, "workers", opts.Workers, "Clusters reconciled in parallel.")
	flag.StringVar(&memoryLimit, "memory-limit", "", "The container's memory limit (a quantity such as 512Mi, or bytes); the Go runtime keeps its heap under 90% of it. Ignored when GOMEMLIMIT is set.")
	flag.StringVar(&allowedExecCommands, "allowed-exec-commands", "", "Comma-separated exec credential plugin commands (such as argocd-k8s-auth) that a Registration's spec.credentials.allowedExecCommands may let through to Argo CD; empty allows none.")
	flag.StringVar(&deniedCIDRs, "denied-cidrs", "", "Comma-separated CIDRs no workload API server may be at; empty means link-local (169.254.0.0/16, fe80::/10), \"none\" denies nothing.")
	flag.DurationVar(&opts.ReconcileTimeout, "reconcile-timeout", opts.ReconcileTimeout, "Deadline of one reconcile of one Cluster, every workload call included.")
	flag.Int64Var(&opts.MaxResponseBytes, "workload-max-response-bytes", opts.MaxResponseBytes, "Cap on each response body read from a workload API server.")
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	opts.WorkloadQPS = float32(workloadQPS)
	// A token for local runs comes from the environment, never from the command line (visible in ps).
	pluginOpts.Token = os.Getenv("FLEETBRIDGE_PLUGIN_TOKEN")
	pluginOpts.ConfigMaps = map[string]string{}
	for _, entry := range commaList(pluginConfigMaps) {
		name, tenant, _ := strings.Cut(entry, "=")
		pluginOpts.ConfigMaps[strings.TrimSpace(name)] = strings.TrimSpace(tenant)
	}
	pluginOpts.FluxURLs = commaList(pluginFluxURLs)
	opts.Namespaces = registrar.Namespaces{Secrets: commaList(secretNamespaces), Clusters: commaList(clusterNamespaces), ClusterProfiles: profileNamespace}
	opts.AllowedExecCommands = commaList(allowedExecCommands)
	denied, err := kubeconfig.ParseCIDRs(deniedCIDRs)
	if err != nil {
		return fmt.Errorf("--denied-cidrs: %w", err)
	}
	opts.DeniedCIDRs = denied
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	_, goMemLimitSet := os.LookupEnv("GOMEMLIMIT")
	memLimit, err := goMemoryLimit(memoryLimit, goMemLimitSet)
	if err != nil {
		return err
	}
	if memLimit > 0 {
		debug.SetMemoryLimit(memLimit)
		ctrl.Log.Info("Go runtime memory limit set", "bytes", memLimit)
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		// The live heap is a fraction of the peak: a cold start's garbage (TLS handshakes, decoded
		// responses) grows to the live heap's size again under the default of 100. 50 lowers the peak of
		// 1,000 Clusters from 93 to 86 MB for about the same cold start (docs/performance.md, Run G).
		debug.SetGCPercent(gcPercent)
	}
	if pluginOpts.MaxAnswerBytes == 0 {
		pluginOpts.MaxAnswerBytes = maxAnswerBytes(memLimit)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clusterv1.AddToScheme(scheme))
	utilruntime.Must(fleetv1.AddToScheme(scheme))
	utilruntime.Must(clusterinventory.AddToScheme(scheme))

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(kubeQPS), kubeBurst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        leaderElectionID,
		LeaderElectionNamespace: leaderElectionNamespace,
		Cache:                   cache.Options{ByObject: registrar.CacheByObject(opts.Namespaces)},
	})
	if err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	if enableRegistrar {
		if _, err := registrar.Setup(ctx, mgr, opts); err != nil {
			return err
		}
	}
	if enablePlugin {
		store, err := plugin.Setup(ctx, mgr, pluginOpts)
		if err != nil {
			return err
		}
		// A replica whose fleet view has not synced would answer 503; keep it out of the plugin Service.
		if err := mgr.AddReadyzCheck("fleet-synced", func(*http.Request) error {
			if !store.Synced() {
				return errors.New("fleet caches have not synced")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}

// commaList splits a comma-separated flag value, dropping empty entries.
func commaList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// gcPercent is the garbage collector's target when GOGC is not set.
const gcPercent = 50
