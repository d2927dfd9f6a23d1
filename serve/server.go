package serve

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// Server answers the API and serves the page. Build it with New; it is an
// http.Handler.
type Server struct {
	models      map[string]*modelctx.Transformer
	modelNames  []string
	saes        map[string]*sae.Autoencoder
	saeNames    []string
	records     map[string]RecordLoader
	recordNames []string
	workflows   Workflows
	limits      Limits
	token       string
	log         *log.Logger
	quiet       bool // no access log lines

	mux   *http.ServeMux
	gate  *gate
	inflt sync.WaitGroup
	// closing is set by Drain: new API requests get 503.
	closing atomic.Bool
	// cancelled counts runs whose client went away before they ended.
	cancelled atomic.Int64

	// testHooks, when set (by this package's tests), adds hooks to every
	// forward pass, with the request's context.
	testHooks func(ctx context.Context) *hooks.Hooks
}

// New builds a server over what the options hand it. It needs at least
// one model.
func New(opts ...Option) (*Server, error) {
	s := &Server{
		models:  map[string]*modelctx.Transformer{},
		saes:    map[string]*sae.Autoencoder{},
		records: map[string]RecordLoader{},
		limits:  DefaultLimits(),
		log:     log.New(os.Stderr, "", log.LstdFlags),
	}
	for _, o := range opts {
		o(s)
	}
	if len(s.models) == 0 {
		return nil, ErrNoModel
	}
	s.gate = newGate(s.limits.MaxConcurrent, s.limits.MaxQueue)
	if err := s.routes(); err != nil {
		return nil, err
	}
	return s, nil
}

// Limits are the limits the server applies.
func (s *Server) Limits() Limits { return s.limits }

// endpoint is one API route.
type endpoint struct {
	pattern string
	handle  func(w http.ResponseWriter, r *http.Request) error
}

// endpoints are the API's routes (the OpenAPI document lists each).
func (s *Server) endpoints() []endpoint {
	return []endpoint{
		{"GET /v1/models", s.handleModels},
		{"GET /v1/capabilities", s.handleCapabilities},
		{"GET /v1/openapi.json", s.handleOpenAPI},
		{"POST /v1/forward", s.handleForward},
		{"POST /v1/sample", s.handleSample},
		{"POST /v1/sae/encode", s.handleSAEEncode},
		{"POST /v1/sae/top", s.handleSAETop},
		{"POST /v1/grad", s.handleGrad},
		{"POST /v1/attribute", s.handleAttribute},
		{"GET /v1/records/{name}/{layer}/{unit}", s.handleRecord},
		{"POST /v1/workflows/{name}", s.handleWorkflow},
	}
}

func (s *Server) routes() error {
	m := http.NewServeMux()
	api := func(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
		m.Handle(pattern, s.apiHandler(h))
	}
	for _, e := range s.endpoints() {
		api(e.pattern, e.handle)
	}
	api("/v1/", func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "no endpoint %s %s", r.Method, r.URL.Path)
	})
	page, err := staticHandler()
	if err != nil {
		return err
	}
	m.Handle("/", page)
	s.mux = m
	return nil
}

// ServeHTTP logs the request with its latency and recovers panics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			s.log.Printf("panic serving %s %s: %v\n%s", r.Method, r.URL.Path, p, debug.Stack())
			if !rec.wrote {
				writeError(rec, errorf(http.StatusInternalServerError, "internal error: %v", p))
			}
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		if s.quiet {
			return
		}
		note := ""
		if r.Context().Err() != nil {
			note = " (client gone)"
		}
		s.log.Printf("%s %s %d %dB %s%s", r.Method, r.URL.Path, status, rec.n, time.Since(start).Round(time.Microsecond), note)
	}()
	s.mux.ServeHTTP(rec, r)
}

// apiHandler wraps an API endpoint: refuses requests while draining,
// checks the token, tracks the request as in flight, and writes its error.
func (s *Server) apiHandler(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onnx-tdb"`)
			writeError(w, errorf(http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer <token>)"))
			return
		}
		if !s.enter() {
			w.Header().Set("Connection", "close")
			writeError(w, errorf(http.StatusServiceUnavailable, "%v", ErrShuttingDown))
			return
		}
		defer s.inflt.Done()
		if err := h(w, r); err != nil {
			if r.Context().Err() != nil && isCancel(err) {
				s.cancelled.Add(1)
				// The client is gone; there is no one to answer.
				w.WriteHeader(statusClientClosed)
				return
			}
			writeError(w, err)
		}
	})
}

// enter counts a request in flight unless the server is draining.
func (s *Server) enter() bool {
	s.inflt.Add(1)
	if s.closing.Load() {
		s.inflt.Done()
		return false
	}
	return true
}

func (s *Server) authorized(r *http.Request) bool {
	if s.token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1
}

// Drain refuses new API requests and waits until those in flight have
// ended, or ctx is done. Call it before closing the models; use it with
// http.Server.Shutdown, which stops accepting connections.
func (s *Server) Drain(ctx context.Context) error {
	s.closing.Store(true)
	done := make(chan struct{})
	go func() { s.inflt.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain: %w", ctx.Err())
	}
}

// Cancelled is the number of requests whose client went away before the
// answer was ready.
func (s *Server) Cancelled() int64 { return s.cancelled.Load() }

// statusWriter remembers the status and size of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.status, w.wrote = code, true
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Flush lets server-sent events through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the connection underneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
