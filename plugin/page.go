package plugin

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

//go:embed page
var pageFiles embed.FS

// Paging of the grid: the page renders one window of clusters, so a fleet of thousands renders as fast
// as one of a hundred.
const (
	defaultPageRows = 100
	maxPageRows     = 500
)

// PageServer serves the read-only fleet page and the same data as JSON: a grid of registered clusters
// (rows) x Workloads (columns), each cell the state of what the pair became, a cluster view and a
// Workload view. It holds no credentials: it reads the fleet store (owned Secrets' metadata and CAPI
// Clusters) and the state of the generated objects. It listens on its own address, loopback by
// default, reached with kubectl port-forward, so Kubernetes RBAC decides who may open it.
type PageServer struct {
	fleet     Fleet
	regs      registrationLookup
	generated *generatedObjects
	owners    *workloadOfPair
	grace     time.Duration
	now       func() time.Time
	// argoURL is Argo CD's UI, for links to Applications ("" links nowhere).
	argoURL string
	log     logr.Logger
	engine  *gin.Engine
	pages   *template.Template
}

// registrationLookup says what a Registration reports of one of its clusters (fleet.Store does).
type registrationLookup interface {
	RegistrationOf(name string, cluster types.NamespacedName) (mode, reason, message string, ok bool)
}

// NewPageServer builds the page server and its routes.
func NewPageServer(f Fleet, regs registrationLookup, generated *generatedObjects, owners *workloadOfPair, grace time.Duration, argoURL string, log logr.Logger) (*PageServer, error) {
	gin.SetMode(gin.ReleaseMode)
	pages, err := template.New("pages").Funcs(template.FuncMap{"stateClass": strings.ToLower, "inc": func(i int) int { return i + 1 },
		"title": func(kind, namespace, name string) map[string]string {
			return map[string]string{"Title": kind + " " + namespace + "/" + name}
		}}).ParseFS(pageFiles, "page/*.html")
	if err != nil {
		return nil, err
	}
	s := &PageServer{fleet: f, regs: regs, generated: generated, owners: owners, grace: grace, now: time.Now,
		argoURL: strings.TrimSuffix(argoURL, "/"), log: log, engine: gin.New(), pages: pages}
	s.routes()
	return s, nil
}

// Handler is the page server's http.Handler.
func (s *PageServer) Handler() http.Handler { return s.engine }

func (s *PageServer) routes() {
	e := s.engine
	e.Use(gin.CustomRecovery(func(c *gin.Context, _ any) { s.fail(c, newError(kindInternal, "internal error")) }))
	e.NoRoute(func(c *gin.Context) { s.fail(c, newError(kindNotFound, "no such page")) })
	assets, _ := fs.Sub(pageFiles, "page/assets")
	e.StaticFS("/assets", http.FS(assets))
	e.GET("/", s.synced, s.handleGridPage)
	e.GET("/clusters/:namespace/:name", s.synced, s.handleClusterPage)
	e.GET("/workloads/:namespace/:name", s.synced, s.handleWorkloadPage)
	api := e.Group("/api/v1", s.synced)
	api.GET("/grid", s.handleGrid)
	api.GET("/clusters/:namespace/:name", s.handleCluster)
	api.GET("/workloads/:namespace/:name", s.handleWorkload)
}

// synced answers 503 until the fleet caches have synced: a page of an incomplete fleet would mislead.
func (s *PageServer) synced(c *gin.Context) {
	if !s.fleet.Synced() {
		s.fail(c, newError(kindNotReady, "the fleet caches have not synced yet"))
		return
	}
	c.Next()
}

// fail answers an error: JSON for the API, a short text page otherwise.
func (s *PageServer) fail(c *gin.Context, err error) {
	code := status(err)
	if strings.HasPrefix(c.Request.URL.Path, "/api/") {
		c.AbortWithStatusJSON(code, gin.H{"error": err.Error()})
		return
	}
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.AbortWithStatus(code)
	_, _ = c.Writer.WriteString(err.Error() + "\n")
}

// Grid is one window of the fleet grid.
type Grid struct {
	Workloads []GridWorkload `json:"workloads"`
	Clusters  []GridCluster  `json:"clusters"`
	// Total counts the clusters the filter keeps; Offset and Limit place this window among them.
	Total    int    `json:"total"`
	Offset   int    `json:"offset"`
	Limit    int    `json:"limit"`
	Selector string `json:"selector,omitempty"`
	Search   string `json:"search,omitempty"`
	// Version is the fleet snapshot's: a page polling sees whether anything changed.
	Version uint64 `json:"version"`
}

// GridWorkload is one column.
type GridWorkload struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// GridCluster is one row: a registered cluster and its cells, one per column.
type GridCluster struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Ready     bool     `json:"ready"`
	Version   string   `json:"kubernetesVersion,omitempty"`
	Cells     []Cell   `json:"cells"`
	Labels    []string `json:"labels,omitempty"`
}

// Cell is one pair's state: "" (no pair: the Workload does not select the cluster), or Healthy,
// Progressing, OutOfSync, Degraded or Missing, with the reason and a link to the Application.
type Cell struct {
	State    string `json:"state,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Revision string `json:"revision,omitempty"`
	Link     string `json:"link,omitempty"`
}

// gridQuery is the grid's filter and window, from the query string.
type gridQuery struct {
	selector labels.Selector
	raw      string
	search   string
	offset   int
	limit    int
}

func parseGridQuery(q url.Values) (gridQuery, error) {
	out := gridQuery{raw: strings.TrimSpace(q.Get("selector")), search: strings.TrimSpace(q.Get("q")), selector: labels.Everything()}
	if out.raw != "" {
		sel, err := labels.Parse(out.raw)
		if err != nil {
			return out, newError(kindBadRequest, "selector: "+err.Error())
		}
		out.selector = sel
	}
	var err error
	if out.offset, err = intParam(q, "offset", 0, 0, 1<<30); err != nil {
		return out, err
	}
	out.limit, err = intParam(q, "limit", defaultPageRows, 1, maxPageRows)
	return out, err
}

// intParam is a whole-number query parameter between lo and hi, def when absent.
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, newError(kindBadRequest, fmt.Sprintf("%s: want a whole number from %d to %d", name, lo, hi))
	}
	return n, nil
}

// grid builds one window of the grid from a snapshot.
func (s *PageServer) grid(snap *fleet.Snapshot, q gridQuery) Grid {
	out := Grid{Offset: q.offset, Limit: q.limit, Selector: q.raw, Search: q.search, Version: snap.Version}
	// A cluster registered by two Registrations is one row; the pairs are computed from all its entries,
	// since a Workload that names a Registration pairs only with that Registration's entry.
	seen := map[types.NamespacedName]bool{}
	var rows []fleet.Cluster
	for _, c := range snap.Clusters {
		key := types.NamespacedName{Namespace: c.Namespace, Name: c.Name}
		if seen[key] || !q.selector.Matches(labels.Set(c.Labels)) || q.search != "" && !strings.Contains(key.String(), q.search) {
			continue
		}
		seen[key] = true
		rows = append(rows, c)
	}
	out.Total = len(rows)
	rows = rows[min(q.offset, len(rows)):min(q.offset+q.limit, len(rows))]
	inWindow := map[types.NamespacedName]bool{}
	for _, c := range rows {
		inWindow[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] = true
	}
	var entries []fleet.Cluster
	for _, c := range snap.Clusters {
		if inWindow[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] {
			entries = append(entries, c)
		}
	}
	for _, w := range snap.Workloads {
		out.Workloads = append(out.Workloads, GridWorkload{Namespace: w.Namespace, Name: w.Name})
	}
	index := map[types.NamespacedName]int{}
	for i, c := range rows {
		index[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] = i
		out.Clusters = append(out.Clusters, GridCluster{Namespace: c.Namespace, Name: c.Name, Ready: c.Ready, Version: c.KubernetesVersion,
			Cells: make([]Cell, len(snap.Workloads)), Labels: labelList(c.Labels)})
	}
	now := s.now()
	window := &fleet.Snapshot{Clusters: entries}
	for col, w := range snap.Workloads {
		window.Workloads = []fleet.Workload{w}
		for _, ref := range window.PairRefs(fleet.Filter{}) {
			row, ok := index[ref.Cluster]
			if !ok {
				continue
			}
			out.Clusters[row].Cells[col] = s.cell(ref, now)
		}
	}
	return out
}

// cell is one pair's state, as Workload status counts it.
func (s *PageServer) cell(ref fleet.PairRef, now time.Time) Cell {
	obj, key, found := s.generated.lookupObject(ref)
	p := pairHealth{since: s.owners.missingSinceOf(ref.Name, now)}
	if found {
		p.object = &obj
	}
	state, reason, revision := classify(p, now, s.grace)
	c := Cell{State: state, Reason: reason, Revision: revision}
	if found && obj.argo && s.argoURL != "" {
		c.Link = s.argoURL + "/applications/" + url.PathEscape(key.namespace) + "/" + url.PathEscape(key.name)
	}
	return c
}

func labelList(l map[string]string) []string {
	out := make([]string, 0, len(l))
	for k, v := range l {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func (s *PageServer) handleGrid(c *gin.Context) {
	q, err := parseGridQuery(c.Request.URL.Query())
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, s.grid(s.fleet.Snapshot(), q))
}

func (s *PageServer) handleGridPage(c *gin.Context) {
	q, err := parseGridQuery(c.Request.URL.Query())
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, "grid.html", s.grid(s.fleet.Snapshot(), q))
}

// ClusterView is one cluster's page.
type ClusterView struct {
	Namespace         string   `json:"namespace"`
	Name              string   `json:"name"`
	Labels            []string `json:"labels"`
	KubernetesVersion string   `json:"kubernetesVersion,omitempty"`
	Server            string   `json:"server"`
	ArgoCDName        string   `json:"argocdName,omitempty"`
	// Ready: the API server answered the registrar's last probe. The probe's time is not recorded:
	// writing it would cost a write of every output at every probe.
	Ready          bool               `json:"ready"`
	State          string             `json:"state"`
	Registrations  []RegistrationView `json:"registrations"`
	TokenExpiresAt *time.Time         `json:"tokenExpiresAt,omitempty"`
	Pairs          []PairView         `json:"pairs"`
}

// RegistrationView is one Registration of a cluster: its credentials mode and, when its status lists
// the cluster as failing, why.
type RegistrationView struct {
	Name            string `json:"name"`
	CredentialsMode string `json:"credentialsMode,omitempty"`
	Reason          string `json:"reason,omitempty"`
	Message         string `json:"message,omitempty"`
}

// PairView is one Workload on a cluster's page.
type PairView struct {
	Workload GridWorkload `json:"workload"`
	Cell
}

func (s *PageServer) clusterView(snap *fleet.Snapshot, key types.NamespacedName) (ClusterView, error) {
	var v ClusterView
	var entries []fleet.Cluster
	for _, c := range snap.Clusters {
		if c.Namespace == key.Namespace && c.Name == key.Name {
			entries = append(entries, c)
		}
	}
	if len(entries) == 0 {
		return v, newError(kindNotFound, "no registered cluster "+key.String())
	}
	first := entries[0]
	v = ClusterView{Namespace: key.Namespace, Name: key.Name, Labels: labelList(first.Labels), KubernetesVersion: first.KubernetesVersion,
		Server: first.Server, ArgoCDName: first.ArgoCDName, Ready: first.Ready, State: "Registered"}
	for _, c := range entries {
		rv := RegistrationView{Name: c.Registration}
		if s.regs != nil {
			rv.CredentialsMode, rv.Reason, rv.Message, _ = s.regs.RegistrationOf(c.Registration, key)
		}
		if rv.Reason != "" && v.State == "Registered" {
			v.State = "Failing: " + rv.Reason
		}
		v.Registrations = append(v.Registrations, rv)
		if !c.TokenExpiresAt.IsZero() && (v.TokenExpiresAt == nil || c.TokenExpiresAt.Before(*v.TokenExpiresAt)) {
			t := c.TokenExpiresAt
			v.TokenExpiresAt = &t
		}
	}
	if !first.Ready && v.State == "Registered" {
		v.State = "Unreachable at the last probe"
	}
	now := s.now()
	for _, w := range snap.Workloads {
		only := &fleet.Snapshot{Clusters: entries, Workloads: []fleet.Workload{w}}
		for _, ref := range only.PairRefs(fleet.Filter{}) {
			v.Pairs = append(v.Pairs, PairView{Workload: GridWorkload{Namespace: w.Namespace, Name: w.Name}, Cell: s.cell(ref, now)})
		}
	}
	return v, nil
}

func (s *PageServer) handleCluster(c *gin.Context) {
	v, err := s.clusterView(s.fleet.Snapshot(), types.NamespacedName{Namespace: c.Param("namespace"), Name: c.Param("name")})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (s *PageServer) handleClusterPage(c *gin.Context) {
	v, err := s.clusterView(s.fleet.Snapshot(), types.NamespacedName{Namespace: c.Param("namespace"), Name: c.Param("name")})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, "cluster.html", v)
}

// WorkloadView is one Workload's page: each cluster it pairs with, the state there and the overrides
// that matched, with the revision spread and the clusters that are not healthy.
type WorkloadView struct {
	Namespace string                 `json:"namespace"`
	Name      string                 `json:"name"`
	Fleet     *fleetv1.WorkloadFleet `json:"fleet,omitempty"`
	Summary   string                 `json:"summary,omitempty"`
	// Overrides are the spec's overrides, by index, as selectors.
	Overrides []string          `json:"overrides,omitempty"`
	Clusters  []WorkloadCluster `json:"clusters"`
}

// WorkloadCluster is one cluster on a Workload's page.
type WorkloadCluster struct {
	Cluster string `json:"cluster"`
	Cell
	// Overrides are the indexes of the overrides whose selector matched the cluster, in order.
	Overrides []int `json:"overrides,omitempty"`
}

func (s *PageServer) workloadView(snap *fleet.Snapshot, key types.NamespacedName) (WorkloadView, error) {
	v := WorkloadView{Namespace: key.Namespace, Name: key.Name}
	var w *fleet.Workload
	for i := range snap.Workloads {
		if snap.Workloads[i].Namespace == key.Namespace && snap.Workloads[i].Name == key.Name {
			w = &snap.Workloads[i]
		}
	}
	if w == nil {
		return v, newError(kindNotFound, "no Workload "+key.String())
	}
	for _, o := range w.Overrides {
		v.Overrides = append(v.Overrides, o.Selector.String())
	}
	clusters := map[types.NamespacedName]fleet.Cluster{}
	for _, c := range snap.Clusters {
		clusters[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] = c
	}
	now := s.now()
	var pairs []pairHealth
	for _, ref := range snap.PairRefs(fleet.Filter{Workloads: []types.NamespacedName{key}}) {
		row := WorkloadCluster{Cluster: ref.Cluster.String(), Cell: s.cell(ref, now)}
		for i, o := range w.Overrides {
			if o.Selector.Matches(labels.Set(clusters[ref.Cluster].Labels)) {
				row.Overrides = append(row.Overrides, i)
			}
		}
		v.Clusters = append(v.Clusters, row)
		p := pairHealth{cluster: ref.Cluster.String(), since: s.owners.missingSinceOf(ref.Name, now)}
		if obj, found := s.generated.lookup(ref); found {
			p.object = &obj
		}
		pairs = append(pairs, p)
	}
	v.Fleet, v.Summary = fleetHealth(pairs, now, s.grace)
	return v, nil
}

func (s *PageServer) handleWorkload(c *gin.Context) {
	v, err := s.workloadView(s.fleet.Snapshot(), types.NamespacedName{Namespace: c.Param("namespace"), Name: c.Param("name")})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (s *PageServer) handleWorkloadPage(c *gin.Context) {
	v, err := s.workloadView(s.fleet.Snapshot(), types.NamespacedName{Namespace: c.Param("namespace"), Name: c.Param("name")})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, "workload.html", v)
}

func (s *PageServer) render(c *gin.Context, name string, data any) {
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Security-Policy", "default-src 'self'")
	c.Status(http.StatusOK)
	if err := s.pages.ExecuteTemplate(c.Writer, name, data); err != nil {
		s.log.Error(err, "fleet page", "page", name)
	}
}

// Run serves on addr until ctx ends.
func (s *PageServer) Run(ctx context.Context, addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.engine, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
