package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Errors of planning and running.
var (
	ErrNoPoint = errors.New("model has no such hook point")
	ErrClosed  = errors.New("engine is closed")
	ErrInput   = errors.New("bad input")
)

// errOnDevice reports Go code reaching for a tensor kept in GPU memory (a
// planning bug: such tensors are only ever read by sessions).
var errOnDevice = errors.New("tensor is in GPU memory")

// PointRef locates a hook site in a graph.
type PointRef struct {
	Tensor string
	// Perm is the permutation that turns the graph's tensor into the
	// reference layout (numpy.transpose(value, Perm)); nil means identity.
	Perm []int
}

// Graph is a whole model as the engine sees it: one ONNX graph (the stages
// merged), the folder its external weights live in, and where each hook
// site is.
type Graph struct {
	Model    *onnxpb.ModelProto
	Dir      string
	Points   map[hooks.Site]PointRef
	Switches []graphs.Switch
	NLayers  int
	// Boundaries are the sites that carry the residual stream from one stage
	// to the next (resid.post_emb, resid.torso.post_mlp of each layer but the
	// last). A plan that reads points of several layers is cut there too, so
	// each layer's read tensors are handed to the hooks and released before
	// the next layer runs, instead of all living at once.
	Boundaries []hooks.Site
	// Head, when set, is the site whose tensor is the input of the model's
	// head (the unembedding, after the final norm). Every plan cut anywhere
	// is cut there too, so the head is the same segment in those plans and
	// one session serves them all: the unembedding is a model's largest
	// weight, and each further session over it would have ONNX Runtime pack
	// a fresh copy just to find it already packed (sessions.go). A plan
	// that is otherwise one session (no hooks, or reads that fit
	// Options.ReadMemory) stays one.
	Head *hooks.Site
}

// Engine runs a Graph with hooks. For each distinct set of hooked sites it
// builds a plan once: the graph cut at the points a hook may write, the
// points only read exposed as extra outputs, everything else fused, each
// segment one ORT session. Plans are cached and their sessions reused.
type Engine struct {
	g *Graph
	o Options
	// dims are the graph's declared tensor shapes, read once (readcuts.go).
	dims     map[string][]dim
	dimsOnce sync.Once
	ws       *weightStore
	pp       *prepacked
	// Forward plans by key, backward plans by key, and the row heads of
	// loss roots (backward_head.go): each built once, on first use.
	plans buildCache[string, *plan]
	// Forward segments' sessions by content (sessions.go), shared by the
	// plans that have the same segment.
	sessions buildCache[string, *session]
	bwd      buildCache[string, *bwdPlan]
	heads    buildCache[hooks.Site, *rowHead]
	life     lifetime
}

// NewEngine prepares an engine; sessions are created on first use.
func NewEngine(g *Graph, o Options) (*Engine, error) {
	if err := start(o.Process, o.Provider.IsCUDA()); err != nil {
		return nil, err
	}
	if g == nil || g.Model == nil {
		return nil, errors.New("new engine: no graph")
	}
	if o.Provider.Name == "" {
		o.Provider = CPUProvider()
	}
	if _, err := o.optLevel(); err != nil {
		return nil, fmt.Errorf("new engine: %w", err)
	}
	ws, err := newWeightStore(g.Model, g.Dir)
	if err != nil {
		return nil, err
	}
	pp, err := newPrepacked()
	if err != nil {
		ws.release()
		return nil, err
	}
	return &Engine{g: g, o: o, ws: ws, pp: pp}, nil
}

// WeightBytes is the size of the weight files the engine maps.
func (e *Engine) WeightBytes() int64 { return e.ws.bytes() }

// Options returns the engine's options.
func (e *Engine) Options() Options { return e.o }

// Close waits for the runs in flight (Run, RunKeep, Backward) to finish,
// then releases every session of every plan and the shared weights. Runs
// that start after Close has begun fail with ErrClosed. Values kept by
// earlier runs stay valid until closed themselves. Close must not be called
// from a hook of one of the engine's own runs (it would wait for itself).
// A second Close returns nil at once.
func (e *Engine) Close() error {
	if !e.life.close() {
		return nil
	}
	errs := []error{
		e.plans.close(func(*plan) error { return nil }), // sessions are the engine's
		e.sessions.close((*session).close),
		e.bwd.close((*bwdPlan).close),
		e.heads.close((*rowHead).close),
	}
	e.pp.release()
	errs = append(errs, e.ws.release())
	return errors.Join(errs...)
}

// PlanCount is the number of plans built so far.
func (e *Engine) PlanCount() int { return e.plans.len() }

// Tensor is an input or output value in Go memory: exactly one of the data
// slices is set, matching the graph's element type.
type Tensor struct {
	Shape []int64
	F32   []float32
	I64   []int64
	Bool  []bool
}

// Request is one run.
type Request struct {
	Inputs  map[string]*Tensor
	Outputs []string   // graph tensors to return (e.g. "logits")
	Hooks   *hooks.Set // may be nil
	// Values are inputs already in ONNX Runtime's memory (outputs Kept by an
	// earlier run, such as a KV cache), fed without a copy. They stay the
	// caller's: the run neither changes nor closes them.
	Values map[string]*Value
	// Keep names outputs (among Outputs) to hand back as Values instead of
	// copying them into Go: they stay where the run left them (in GPU memory
	// on CUDA, where no hook touches them) until closed.
	Keep []string
	// StartAt and StopAt make a partial run (partial.go): it starts from the
	// value of site StartAt, given in Inputs under the site's tensor name,
	// and stops once site StopAt is computed (name its tensor in Outputs).
	// Only the hooks of the sites between them are called.
	StartAt, StopAt *hooks.Site
	// Capture names hook sites whose values (after their hooks ran) RunKeep
	// hands back in Result.Captured as views of ONNX Runtime's memory,
	// without copying them; see Result.
	Capture []hooks.Site
	// Into gives Go buffers for float32 outputs: an output copied into Go
	// whose size matches its buffer is copied there, and its Tensor's F32
	// is that buffer, instead of a new one (callers reuse memory across
	// runs this way).
	Into map[string][]float32
	// Alloc gives Go memory for captured sites: where the run knows a
	// captured tensor's shape before computing it (the plan ran with these
	// input shapes before), ONNX Runtime writes the tensor straight into
	// Alloc(n), a slice of n float32s (any other length is not used), and
	// its Result.Captured tensor's Data is that slice, the caller's memory,
	// which Close leaves in place. Into's buffers are written into the
	// same way. Both save the copy out of ONNX Runtime's memory.
	Alloc func(n int) []float32
	// Free, given with Alloc, lets the run use Alloc's memory for itself:
	// the tensor of a hooked site that the run hands to hooks only (not
	// captured, not an output) is written into Alloc(n) too, where the run
	// knows its shape, and goes back through Free as soon as the run is
	// done with it (after its hooks, or once no later segment reads it),
	// so ONNX Runtime's arena holds none of a run's read points and the
	// caller's memory serves them, run after run.
	Free func(bufs ...[]float32)
}

// Result is what RunKeep returns: the outputs copied into Go, the kept
// ones, and the captured sites' values; the caller must close it.
type Result struct {
	Tensors map[string]*Tensor
	Kept    map[string]*Value
	// Captured holds the values of Request.Capture's sites. Their Data
	// views memory the Result owns (ONNX Runtime's, not Go's): valid until
	// Close, after which it goes back to ONNX Runtime for later runs to
	// reuse. Clone a tensor to keep it longer; do not write to it. The
	// exception are tensors written into Request.Alloc's memory: Close
	// leaves those, and only those, in Captured, with their Data.
	Captured map[hooks.Site]*hooks.Tensor
	caught   *captured
}

// InGo reports whether captured site s's tensor is in memory Request.Alloc
// gave (the caller's, which Close leaves) rather than a view of ONNX
// Runtime's. Ask before Close.
func (r *Result) InGo(s hooks.Site) bool {
	return r != nil && r.caught != nil && r.caught.inGo[s] && r.Captured[s] != nil
}

// Close closes every kept value and releases the captured views (their
// tensors' Data is set to nil). Closing twice is harmless.
func (r *Result) Close() {
	if r == nil {
		return
	}
	for _, v := range r.Kept {
		v.Close()
	}
	r.caught.release()
	r.caught = nil
}

// Run executes one request: it resolves the hooks, builds or reuses the plan,
// runs the segments in order and calls the hooks between them in the
// original's order, and returns the requested outputs, copied into Go memory.
func (e *Engine) Run(ctx context.Context, req Request) (map[string]*Tensor, error) {
	if len(req.Keep) > 0 {
		return nil, fmt.Errorf("%w: Run copies every output; use RunKeep to keep some", ErrInput)
	}
	res, err := e.RunKeep(ctx, req)
	if err != nil {
		return nil, err
	}
	res.Close() // captures, if asked for, are not returned
	return res.Tensors, nil
}

// RunKeep is Run that hands the outputs named in req.Keep back as Values,
// without copying them.
func (e *Engine) RunKeep(ctx context.Context, req Request) (*Result, error) {
	if err := e.life.enter(); err != nil {
		return nil, err
	}
	defer e.life.leave()
	keep := map[string]bool{}
	for _, name := range req.Keep {
		if !slices.Contains(req.Outputs, name) {
			return nil, fmt.Errorf("%w: kept output %s is not among the outputs", ErrInput, name)
		}
		keep[name] = true
	}
	vals, caught, release, err := e.forwardValues(ctx, req, keep)
	e.ws.dropTables()
	if err != nil {
		return nil, err
	}
	defer release()
	res := &Result{Tensors: make(map[string]*Tensor, len(vals)), Kept: map[string]*Value{}, caught: caught}
	if caught != nil {
		res.Captured = caught.tensors
	}
	for name, v := range vals {
		if keep[name] {
			res.Kept[name] = &Value{v: v}
			continue
		}
		t, err := fromValueInto(v, req.Into[name])
		if err != nil {
			res.Close()
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		res.Tensors[name] = t
	}
	return res, nil
}

// forwardValues runs a forward pass and hands back the requested outputs as
// the run's own values, without copying them; they stay valid until release.
//
// Outputs named in keep are detached from the run: release leaves them to
// the caller, and on CUDA they may stay in GPU memory.
func (e *Engine) forwardValues(ctx context.Context, req Request, keep map[string]bool) (map[string]*value, *captured, func(), error) {
	hs := req.Hooks
	if hs == nil {
		hs = hooks.Snapshot()
	}
	defer hs.DoneWithScratch() // observers' copies serve later runs
	uses, err := hs.Uses(e.g.NLayers)
	if err != nil {
		return nil, nil, nil, err
	}
	if uses, err = e.withCaptured(uses, req.Capture); err != nil {
		return nil, nil, nil, err
	}
	if err := e.checkSpan(req); err != nil {
		return nil, nil, nil, err
	}
	sp := spanOf(req)
	window := sp.window(uses, e.g.NLayers)
	p, err := e.plan(req.Outputs, keep, window, sp, e.readStride(req, window))
	if err != nil {
		return nil, nil, nil, err
	}
	x := newExec(p, hs)
	x.keep = keep
	if len(req.Capture) > 0 {
		x.capture = map[hooks.Site]bool{}
		for _, s := range req.Capture {
			x.capture[s] = true
		}
		x.caught = &captured{tensors: map[hooks.Site]*hooks.Tensor{}, inGo: map[hooks.Site]bool{}}
	}
	if len(req.Into) > 0 || (req.Alloc != nil && (len(req.Capture) > 0 || req.Free != nil)) {
		x.pa = e.preallocation(p, req)
	}
	kept := false
	defer func() {
		if !kept {
			x.takeCaptured().release()
		}
	}()
	defer func() {
		if !kept {
			x.release()
		}
	}()
	for name, t := range req.Inputs {
		v, err := toValue(t)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: input %s: %v", ErrInput, name, err)
		}
		x.own(v)
		x.vals[name] = v
	}
	for name, v := range req.Values {
		if _, dup := req.Inputs[name]; dup {
			return nil, nil, nil, fmt.Errorf("%w: input %s given both as a tensor and as a value", ErrInput, name)
		}
		if v == nil || v.v == nil || v.v.v == nil {
			return nil, nil, nil, fmt.Errorf("%w: input %s: closed value", ErrInput, name)
		}
		x.vals[name] = v.v
		x.borrowed[v.v] = true
	}
	ro, done, err := cancelOnDone(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	// Deferred: a hook that ends its goroutine (runtime.Goexit) must not
	// leave the watcher behind.
	defer done()
	x.ro = ro
	err = x.run(ctx)
	x.ro = nil
	// A context ended during the run fails it, even where the last thing
	// that ran was a read-only hook and no session saw the cancellation.
	if cerr := ctx.Err(); cerr != nil {
		return nil, nil, nil, fmt.Errorf("run: %w", cerr)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	x.learned()
	out := make(map[string]*value, len(req.Outputs))
	keepVal := map[*value]bool{}
	for _, name := range req.Outputs {
		v, ok := x.vals[name]
		if !ok {
			return nil, nil, nil, fmt.Errorf("output %s was not computed", name)
		}
		if x.borrowed[v] && keep[name] {
			return nil, nil, nil, fmt.Errorf("%w: kept output %s is an input value", ErrInput, name)
		}
		out[name] = v
		keepVal[v] = true
	}
	// Free the rest now (release is idempotent, so x.release stays safe).
	for _, v := range x.vals {
		if !keepVal[v] && !x.borrowed[v] && !x.held[v] {
			v.release()
			x.giveBack(v)
		}
	}
	for name := range keep {
		x.detach(out[name])
	}
	kept = true
	return out, x.takeCaptured(), x.release, nil
}

// cancelOnDone returns run options that stop a session run when ctx ends,
// and a function that releases them (nil options when ctx cannot end).
func cancelOnDone(ctx context.Context) (*runOptions, func(), error) {
	done := ctx.Done()
	if done == nil {
		return nil, func() {}, nil
	}
	ro, err := newRunOptions()
	if err != nil {
		return nil, nil, err
	}
	finished, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-done:
			ro.terminate()
		case <-finished:
		}
	}()
	// Wait for the watcher before releasing: a terminate racing with the
	// release would use freed run options.
	return ro, func() { close(finished); <-exited; ro.release() }, nil
}
