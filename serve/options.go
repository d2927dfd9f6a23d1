package serve

import (
	"context"
	"encoding/json"
	"log"
	goruntime "runtime"
	"time"

	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// RecordLoader returns one unit's record (a NeuronRecord as JSON:
// {"neuron_id": {...}, "most_positive_activation_records": [{"tokens":
// [...], "activations": [...]}], ...}) of a record set. It returns an error
// wrapping ErrNotFound for a unit the set does not hold.
type RecordLoader func(ctx context.Context, layer, unit int) (json.RawMessage, error)

// Workflows runs named analyses (patch, lens, dla, ...) that other packages
// provide. Run gets the request body as it came and the resolved model, and
// returns what to send back as JSON; errors wrapping ErrBadRequest become
// 400 answers.
type Workflows interface {
	Names() []string
	Run(ctx context.Context, name string, m *modelctx.Transformer, body json.RawMessage) (any, error)
}

// Limits bound what one request may ask for.
type Limits struct {
	BodyBytes     int64         // request body size
	Tokens        int           // tokens in a request, all rows together
	Batch         int           // rows in a request
	Points        int           // entries of "points"
	SampleTokens  int           // new tokens a sample request may ask for
	MaxConcurrent int           // runs going at once
	MaxQueue      int           // requests waiting for a run slot
	QueueTimeout  time.Duration // longest wait for a run slot
}

// DefaultLimits are the limits of a server built without WithLimits.
func DefaultLimits() Limits {
	n := goruntime.NumCPU() / 2
	if n < 1 {
		n = 1
	}
	return Limits{
		BodyBytes:     8 << 20,
		Tokens:        8192,
		Batch:         64,
		Points:        64,
		SampleTokens:  1024,
		MaxConcurrent: n,
		MaxQueue:      256,
		QueueTimeout:  30 * time.Second,
	}
}

// Option configures New.
type Option func(*Server)

// WithModel serves an open model under name. The first model added is the
// default for requests that name none.
func WithModel(name string, m *modelctx.Transformer) Option {
	return func(s *Server) {
		if _, ok := s.models[name]; !ok {
			s.modelNames = append(s.modelNames, name)
		}
		s.models[name] = m
	}
}

// WithAutoencoder makes an open autoencoder available under name to the
// requests' "sae" splices and to the /v1/sae endpoints.
func WithAutoencoder(name string, ae *sae.Autoencoder) Option {
	return func(s *Server) {
		if _, ok := s.saes[name]; !ok {
			s.saeNames = append(s.saeNames, name)
		}
		s.saes[name] = ae
	}
}

// WithRecords serves a record set under name at
// GET /v1/records/{name}/{layer}/{unit}.
func WithRecords(name string, load RecordLoader) Option {
	return func(s *Server) {
		if _, ok := s.records[name]; !ok {
			s.recordNames = append(s.recordNames, name)
		}
		s.records[name] = load
	}
}

// WithWorkflows serves w's analyses at POST /v1/workflows/{name}.
func WithWorkflows(w Workflows) Option { return func(s *Server) { s.workflows = w } }

// WithLimits replaces the default limits; zero fields keep their default.
func WithLimits(l Limits) Option {
	return func(s *Server) {
		d := &s.limits
		set := func(dst *int, v int) {
			if v > 0 {
				*dst = v
			}
		}
		if l.BodyBytes > 0 {
			d.BodyBytes = l.BodyBytes
		}
		set(&d.Tokens, l.Tokens)
		set(&d.Batch, l.Batch)
		set(&d.Points, l.Points)
		set(&d.SampleTokens, l.SampleTokens)
		set(&d.MaxConcurrent, l.MaxConcurrent)
		set(&d.MaxQueue, l.MaxQueue)
		if l.QueueTimeout > 0 {
			d.QueueTimeout = l.QueueTimeout
		}
	}
}

// WithToken requires "Authorization: Bearer token" on every API request
// (the page's static files stay public: they hold no data).
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithLogger sets where access log lines and recovered panics go (default:
// standard error).
func WithLogger(l *log.Logger) Option { return func(s *Server) { s.log = l } }

// WithAccessLog turns the access log lines off (false) or on; recovered
// panics are logged either way.
func WithAccessLog(on bool) Option { return func(s *Server) { s.quiet = !on } }
