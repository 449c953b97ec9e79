package plugin

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-logr/logr"

	"github.com/fleetbridge/fleetbridge/internal/fleet"
)

// Fleet is what the server reads: a Store, or anything else that knows when it is complete.
type Fleet interface {
	Synced() bool
	Snapshot() *fleet.Snapshot
}

// Limits from the protocols the server speaks.
const (
	maxRequestBody = 1 << 20   // Argo CD sends small bodies; anything larger is refused, not read.
	maxFluxBody    = 900 << 10 // Flux Operator's ExternalService limit on the answer.
)

// DefaultMaxAnswerBytes bounds an answer when no memory limit says otherwise. A 100,000-pair answer of
// the benchmark fleet is about 61 MB; Argo CD's ApplicationSet controller buffers the whole body, so the
// bound protects it as much as this server.
const DefaultMaxAnswerBytes = 256 << 20

// Server answers the plugin protocols. It holds its dependencies; routes lists every endpoint.
type Server struct {
	fleet  Fleet
	tokens *Tokens
	log    logr.Logger
	engine *gin.Engine
	// maxAnswer is the largest answer in bytes, checked before the answer is written.
	maxAnswer int64
}

// NewServer builds the server and its routes; maxAnswerBytes <= 0 means DefaultMaxAnswerBytes.
func NewServer(f Fleet, tokens *Tokens, log logr.Logger, maxAnswerBytes int64) *Server {
	gin.SetMode(gin.ReleaseMode)
	if maxAnswerBytes <= 0 {
		maxAnswerBytes = DefaultMaxAnswerBytes
	}
	s := &Server{fleet: f, tokens: tokens, log: log, engine: gin.New(), maxAnswer: maxAnswerBytes}
	s.routes()
	return s
}

// Handler is the server's http.Handler (for httptest and http.Server).
func (s *Server) Handler() http.Handler { return s.engine }

func (s *Server) routes() {
	e := s.engine
	e.HandleMethodNotAllowed = true
	e.Use(s.recoverJSON, s.observe)
	e.NoRoute(func(c *gin.Context) { s.fail(c, newError(kindNotFound, "no such endpoint")) })
	e.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, gin.H{"error": "method not allowed"})
	})
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.handleReady)

	api := e.Group("/api/v1", s.requireToken)
	api.POST("/getparams.execute", s.handleArgoCD)
	api.GET("/flux/inputs", s.handleFlux)
}

func (s *Server) handleReady(c *gin.Context) {
	if !s.fleet.Synced() {
		s.fail(c, newError(kindNotReady, "fleet caches are not synced yet"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// snapshot is the fleet to answer from, or a 503 while it is incomplete: an answer from a partial cache
// would make Argo CD delete Applications of clusters it has not seen yet.
func (s *Server) snapshot() (*fleet.Snapshot, error) {
	if !s.fleet.Synced() {
		return nil, newError(kindNotReady, "fleet caches are not synced yet; retry later")
	}
	return s.fleet.Snapshot(), nil
}

// handleArgoCD answers POST /api/v1/getparams.execute.
func (s *Server) handleArgoCD(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxRequestBody)
	appSet, q, err := parseArgoRequest(c.Request.Body)
	if err != nil {
		s.fail(c, err)
		return
	}
	if n, ok := s.answer(c, q, argoProtocol); ok {
		s.log.V(1).Info("answered plugin generator", "applicationSet", appSet, "pairs", n)
	}
}

// handleFlux answers GET /api/v1/flux/inputs.
func (s *Server) handleFlux(c *gin.Context) {
	q, err := parseFluxRawQuery(c.Request.URL.RawQuery)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.answer(c, q, fluxProtocol)
}

// protocol is one answer format: the pairs' style inside an envelope, and the client's own size limit.
type protocol struct {
	name           string
	style          fleet.Style
	open, closing  string
	clientMaxBytes int64
}

var (
	argoProtocol = protocol{name: "argocd", style: fleet.ArgoCD, open: `{"output":{"parameters":`, closing: "}}\n"}
	fluxProtocol = protocol{name: "flux", style: fleet.Flux, open: `{"inputs":`, closing: "}\n", clientMaxBytes: maxFluxBody}
)

// narrowHint names the filters that make an answer smaller.
const narrowHint = "narrow it with workloads, workloadSelector, workloadNamespace, clusterSelector or registration"

// answer writes the pairs a query allows within the token's scope, and reports how many. Its size is
// measured from the encoded fragments first, so an answer over a limit is refused before any of it is
// built, and one within the limits is streamed: it is never held in memory whole.
func (s *Server) answer(c *gin.Context, q query, p protocol) (int, bool) {
	snap, err := s.snapshot()
	if err != nil {
		s.fail(c, err)
		return 0, false
	}
	filter, err := q.filter(scopeFrom(c), snap)
	if err != nil {
		s.fail(c, err)
		return 0, false
	}
	pairs, err := snap.Answer(filter, p.style)
	if errors.Is(err, fleet.ErrIncomplete) {
		err = newError(kindNotReady, err.Error())
	}
	if err != nil {
		s.fail(c, err)
		return 0, false
	}
	defer pairs.Release()
	size, n := pairs.Size()+int64(len(p.open)+len(p.closing)), pairs.Len()
	if p.clientMaxBytes > 0 && size > p.clientMaxBytes {
		s.fail(c, newError(kindUnprocessable, fmt.Sprintf("the answer is %d bytes (%d inputs), over the 900 KiB Flux Operator accepts; %s, and use one ResourceSetInputProvider per slice", size, n, narrowHint)))
		return 0, false
	}
	if size > s.maxAnswer {
		answersRefused.WithLabelValues(p.name).Inc()
		s.fail(c, newError(kindUnprocessable, fmt.Sprintf("the answer is %d bytes (%d pairs), over this server's limit of %d bytes (--max-answer-bytes); %s", size, n, s.maxAnswer, narrowHint)))
		return 0, false
	}
	c.Header("Content-Type", "application/json")
	var out io.Writer = c.Writer
	var zw *gzip.Writer
	if acceptsGzip(c.GetHeader("Accept-Encoding")) {
		zw = gzipWriters.Get().(*gzip.Writer)
		zw.Reset(c.Writer)
		defer func() { zw.Reset(io.Discard); gzipWriters.Put(zw) }()
		out = zw
		c.Header("Content-Encoding", "gzip")
		c.Header("Vary", "Accept-Encoding")
	} else {
		c.Header("Content-Length", strconv.FormatInt(size, 10))
	}
	c.Status(http.StatusOK)
	bw := bufferedWriters.Get().(*bufio.Writer)
	bw.Reset(out)
	defer func() { bw.Reset(nil); bufferedWriters.Put(bw) }()
	_, _ = bw.WriteString(p.open)
	_, err = pairs.WriteTo(bw)
	if err == nil {
		_, _ = bw.WriteString(p.closing)
		err = bw.Flush()
	}
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err != nil {
		// Only the connection fails here: the answer was resolved before the status was sent.
		s.log.V(1).Info("the client went away during an answer", "path", c.Request.URL.Path, "error", err.Error())
		return n, false
	}
	pairsServed.WithLabelValues(p.name).Add(float64(n))
	return n, true
}

// acceptsGzip reads an Accept-Encoding header: gzip listed, and not with q=0.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			return strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0"
		}
	}
	return false
}

// Writers are recycled: a fleet's answers come in bursts (every ApplicationSet after a refresh).
var (
	bufferedWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}
	gzipWriters     = sync.Pool{New: func() any { zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return zw }}
)

// fail writes {"error": ...} with the status the error table gives.
func (s *Server) fail(c *gin.Context, err error) {
	code := status(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		s.log.Error(err, "plugin request failed", "path", c.Request.URL.Path)
	}
	c.AbortWithStatusJSON(code, gin.H{"error": msg})
}

// recoverJSON turns a panic into a 500 with a JSON body, never a dropped connection or a 200.
func (s *Server) recoverJSON(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.Error(nil, "plugin handler panicked", "panic", r, "path", c.Request.URL.Path)
			if !c.Writer.Written() {
				c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
			}
		}
	}()
	c.Next()
}

func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	requests.WithLabelValues(route, strconv.Itoa(c.Writer.Status())).Inc()
	latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

// Run serves on addr until ctx ends, with timeouts so slow clients cannot hold connections.
func (s *Server) Run(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on an existing listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	case err := <-errs:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
