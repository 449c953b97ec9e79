package plugin

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
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

// Server answers the plugin protocols. It holds its dependencies; routes lists every endpoint.
type Server struct {
	fleet  Fleet
	tokens *Tokens
	log    logr.Logger
	engine *gin.Engine
}

// NewServer builds the server and its routes.
func NewServer(f Fleet, tokens *Tokens, log logr.Logger) *Server {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{fleet: f, tokens: tokens, log: log, engine: gin.New()}
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

// answerBuffers recycles answer bodies: a large fleet's answer is tens of megabytes, and allocating it
// afresh for every ApplicationSet reconcile would dominate the server's memory traffic.
var answerBuffers = sync.Pool{New: func() any { return new([]byte) }}

// handleArgoCD answers POST /api/v1/getparams.execute.
func (s *Server) handleArgoCD(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxRequestBody)
	appSet, filter, err := parseArgoRequest(c.Request.Body)
	if err != nil {
		s.fail(c, err)
		return
	}
	if n, ok := s.answer(c, filter, fleet.ArgoCD, `{"output":{"parameters":`, "}}\n", 0); ok {
		s.log.V(1).Info("answered plugin generator", "applicationSet", appSet, "pairs", n)
	}
}

// handleFlux answers GET /api/v1/flux/inputs.
func (s *Server) handleFlux(c *gin.Context) {
	filter, err := parseFluxQuery(c.Request.URL.Query())
	if err != nil {
		s.fail(c, err)
		return
	}
	s.answer(c, filter, fleet.Flux, `{"inputs":`, "}\n", maxFluxBody)
}

// answer writes the pairs a filter allows, wrapped in a protocol's envelope, and reports how many.
func (s *Server) answer(c *gin.Context, filter fleet.Filter, style fleet.Style, open, closing string, limit int) (int, bool) {
	snap, err := s.snapshot()
	if err != nil {
		s.fail(c, err)
		return 0, false
	}
	buf := answerBuffers.Get().(*[]byte)
	defer answerBuffers.Put(buf)
	body, n, err := snap.AppendPairs(append((*buf)[:0], open...), filter, style)
	if err != nil {
		s.fail(c, err)
		return 0, false
	}
	body = append(body, closing...)
	*buf = body
	protocol := "argocd"
	if style == fleet.Flux {
		protocol = "flux"
	}
	pairsServed.WithLabelValues(protocol).Add(float64(n))
	return n, s.writeBody(c, body, limit)
}

// writeBody sends a complete answer: it is built in full before anything is sent, so a failure is still
// a 500 and never a truncated 200; limit > 0 refuses answers larger than the client accepts.
func (s *Server) writeBody(c *gin.Context, body []byte, limit int) bool {
	if limit > 0 && len(body) > limit {
		s.fail(c, newError(kindUnprocessable, "the answer is "+strconv.Itoa(len(body))+
			" bytes, over the 900 KiB Flux Operator accepts; narrow it with workloads, workloadSelector, workloadNamespace, clusterSelector or registration, and use one ResourceSetInputProvider per slice"))
		return false
	}
	c.Header("Content-Type", "application/json")
	if strings.Contains(c.GetHeader("Accept-Encoding"), "gzip") {
		var zbuf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&zbuf, gzip.BestSpeed)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = zbuf.Bytes()
		c.Header("Content-Encoding", "gzip")
		c.Header("Vary", "Accept-Encoding")
	}
	c.Header("Content-Length", strconv.Itoa(len(body)))
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(body)
	return true
}

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
