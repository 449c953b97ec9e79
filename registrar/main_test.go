package registrar

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// The management server is shared by the package's envtest tests (one start, about 4 s).
var mgmt *testenv.Management

func TestMain(m *testing.M) {
	// Every log line of the package's controllers is kept, so tests can prove no credential is logged.
	var out io.Writer = testLogs
	if os.Getenv("FLEETBRIDGE_TEST_LOGS") != "" {
		out = io.MultiWriter(testLogs, os.Stderr)
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(out)))
	os.Exit(testenv.RunMain(m, testenv.Options{}, &mgmt))
}

// testLogs holds everything the controllers logged in this test binary.
var testLogs = &syncBuffer{}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeCounter counts mutating API requests passing through a transport.
type writeCounter struct {
	n     atomic.Int64
	mu    sync.Mutex
	paths []string
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.n.Add(1)
			w.mu.Lock()
			w.paths = append(w.paths, req.Method+" "+req.URL.Path)
			w.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (w *writeCounter) reset() {
	w.n.Store(0)
	w.mu.Lock()
	w.paths = nil
	w.mu.Unlock()
}

func (w *writeCounter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.paths, ", ")
}

// requestCounter counts every request passing through a transport, reads included (a probe is a GET
// of /version), by the host it goes to, so a test can tell which workload server was called.
type requestCounter struct {
	mu     sync.Mutex
	byHost map[string]int
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		c.mu.Lock()
		if c.byHost == nil {
			c.byHost = map[string]int{}
		}
		c.byHost[req.URL.Host]++
		c.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

// to is how many requests went to the server at serverURL.
func (c *requestCounter) to(serverURL string) int {
	u, err := url.Parse(serverURL)
	if err != nil {
		return -1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byHost[u.Host]
}

func (c *requestCounter) reset() {
	c.mu.Lock()
	c.byHost = nil
	c.mu.Unlock()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// testClock is a clock tests can move forward.
// pastRenewal moves a 1h token past its renewal point whatever its jitter (renewAt: at most 85% of
// the lifetime) while it is still valid.
const pastRenewal = 52 * time.Minute

type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// runningManager is a registrar running in this process against the management server.
type runningManager struct {
	*inProcessRegistrar
	mgmtWrites     *writeCounter
	workloadWrites *writeCounter
	// workloadRequests counts every call to a workload server, by server.
	workloadRequests *requestCounter
	clock            *testClock
	reconciles       *reconcileLog
}

// reconcileLog remembers when the last finished reconcile of each Cluster started.
type reconcileLog struct {
	mu      sync.Mutex
	started map[types.NamespacedName]time.Time
}

func (l *reconcileLog) record(key types.NamespacedName, started time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if started.After(l.started[key]) {
		l.started[key] = started
	}
}

// since says whether a reconcile of key that started after t has finished.
func (l *reconcileLog) since(key types.NamespacedName, t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.started[key].After(t)
}

func startManager(t *testing.T) *runningManager {
	t.Helper()
	return startManagerIn(t, Namespaces{})
}

// startManagerIn starts a registrar confined to namespaces, as --secret-namespaces and
// --cluster-namespaces confine the binary; tweaks adjust its options last.
func startManagerIn(t *testing.T, namespaces Namespaces, tweaks ...func(*Options)) *runningManager {
	t.Helper()
	return startManagerWith(t, func(o *Options) {
		o.Namespaces = namespaces
		for _, tweak := range tweaks {
			tweak(o)
		}
	})
}

// startManagerWith starts a registrar with the test defaults, changed by tune.
func startManagerWith(t *testing.T, tune func(*Options)) *runningManager {
	t.Helper()
	rm := &runningManager{mgmtWrites: &writeCounter{}, workloadWrites: &writeCounter{}, workloadRequests: &requestCounter{}, clock: &testClock{},
		reconciles: &reconcileLog{started: map[types.NamespacedName]time.Time{}}}
	cfg := rest.CopyConfig(mgmt.Config)
	cfg.Wrap(rm.mgmtWrites.wrap)
	opts := DefaultOptions()
	opts.Now = rm.clock.Now
	opts.WrapWorkloadTransport = func(rt http.RoundTripper) http.RoundTripper {
		return rm.workloadWrites.wrap(rm.workloadRequests.wrap(rt))
	}
	opts.ProbeTimeout = 3 * time.Second
	opts.reconciled = rm.reconciles.record
	tune(&opts)
	rm.inProcessRegistrar = startRegistrar(t, cfg, opts)
	syncCtx, syncCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer syncCancel()
	if !rm.mgr.GetCache().WaitForCacheSync(syncCtx) {
		t.Fatal("manager cache did not sync")
	}
	return rm
}

// inProcessRegistrar is a registrar's manager running in this process, as the binary runs it, until stop.
type inProcessRegistrar struct {
	reg    *Registrar
	mgr    ctrl.Manager
	cancel context.CancelFunc
	done   chan error
}

// startRegistrar starts a manager on cfg with the binary's client rate limits and cache scope, and the
// registrar's controllers with opts.
func startRegistrar(tb testing.TB, cfg *rest.Config, opts Options) *inProcessRegistrar {
	tb.Helper()
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = binaryKubeAPIQPS, binaryKubeAPIBurst
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testenv.NewScheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: CacheByObject(opts.Namespaces)},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcessRegistrar{mgr: mgr, cancel: cancel, done: make(chan error, 1)}
	if p.reg, err = Setup(ctx, mgr, opts); err != nil {
		cancel()
		tb.Fatal(err)
	}
	go func() { p.done <- mgr.Start(ctx) }()
	return p
}

func (p *inProcessRegistrar) stop(tb testing.TB) {
	tb.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil {
			if dump := os.Getenv("FLEETBRIDGE_HANG_DUMP"); dump != "" {
				if f, ferr := os.Create(dump); ferr == nil {
					_ = pprof.Lookup("goroutine").WriteTo(f, 2)
					_ = f.Close()
				}
			}
			tb.Fatalf("manager stopped with %v", err)
		}
	case <-time.After(60 * time.Second):
		tb.Fatal("manager did not stop")
	}
}
