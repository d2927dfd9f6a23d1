package modelctx

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// Errors for bad input.
var (
	ErrTokenOutOfRange = errors.New("token id out of range")
	ErrTooLong         = errors.New("sequence longer than the context window")
	ErrEmptyBatch      = errors.New("empty batch")
	ErrRagged          = errors.New("rows of different lengths need a pad mask, which this model does not take")
	ErrNoTokenizer     = errors.New("model has no tokenizer: give token ids")
	ErrNoPoint         = runtime.ErrNoPoint
)

// Option configures Open.
type Option func(*runtime.Options)

// WithDevice selects CPU or CUDA (device ordinal id).
func WithDevice(d runtime.Device, id int) Option {
	return func(o *runtime.Options) { o.Provider = d.Provider(id) }
}

// WithThreads sets the intra-op threads of each session (0: one per core).
func WithThreads(n int) Option { return func(o *runtime.Options) { o.Threads = n } }

// WithRuntime replaces all runtime options.
func WithRuntime(r runtime.Options) Option { return func(o *runtime.Options) { *o = r } }

// Transformer is a model opened from an exported directory.
type Transformer struct {
	man    *export.Manifest
	dir    string
	eng    *runtime.Engine
	points map[hooks.Site]runtime.PointRef
	resid  []hooks.Site // the residual stream entering each layer, and the final one
	outs   outLayers    // the out_layer values of mlp.post_act, read on first use
	tok    lazyTokenizer
	bufs   bufPool // logits and captured activations given back by Output.Release
}

// Open opens an exported model directory.
func Open(dir string, opts ...Option) (*Transformer, error) {
	return open(dir, false, opts)
}

// OpenWhole opens the exported model's one-graph copy (whole.onnx, written by
// export --whole; else the stages merged) with no hook points: a plain
// session, the baseline the hooked paths are measured against.
func OpenWhole(dir string, opts ...Option) (*Transformer, error) {
	return open(dir, true, opts)
}

func open(dir string, whole bool, opts []Option) (*Transformer, error) {
	man, err := export.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if _, err := export.Lookup(man.Architecture); err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	var model *onnxpb.ModelProto
	if whole && man.Whole != "" {
		model, err = graphs.ReadModel(filepath.Join(dir, man.Whole))
	} else {
		model, err = export.LoadGraph(dir, man)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	points := map[hooks.Site]runtime.PointRef{}
	for _, p := range man.Points {
		if whole {
			break
		}
		site, err := p.Site()
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", dir, err)
		}
		points[site] = runtime.PointRef{Tensor: p.Tensor, Perm: p.Perm}
	}
	resid, err := residualSites(man)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	var boundaries []hooks.Site
	for _, site := range resid[:man.Config.NLayers] {
		if points[site].Tensor != "" {
			boundaries = append(boundaries, site)
		}
	}
	var head *hooks.Site // the unembedding's input, where plans share a cut
	if final := (hooks.Site{Point: hooks.PostLnF, Layer: -1}); points[final].Tensor != "" {
		head = &final
	}
	var ro runtime.Options
	for _, o := range opts {
		o(&ro)
	}
	eng, err := runtime.NewEngine(&runtime.Graph{
		Head:       head,
		Model:      model,
		Dir:        dir,
		Points:     points,
		Switches:   man.Switches,
		NLayers:    man.Config.NLayers,
		Boundaries: boundaries,
	}, ro)
	if err != nil {
		return nil, err
	}
	return &Transformer{man: man, dir: dir, eng: eng, points: points, resid: resid}, nil
}

// Close releases the model's ONNX Runtime sessions.
func (t *Transformer) Close() error {
	t.bufs.drop()
	return errors.Join(t.eng.Close(), t.outs.close())
}

// DropReleased lets go of the memory released Outputs and Views gave back
// (it is kept for the next Forward of the same shape; see Output.Release):
// after a large capture that will not be repeated, it returns that memory
// to the garbage collector.
func (t *Transformer) DropReleased() { t.bufs.drop() }

// snapshot freezes hook sets for one run, with the model's site values.
// A hook at a point the model lacks, or restricted to a layer it does not
// have, makes the set's runs fail with that error (hooks.Set.Check).
func (t *Transformer) snapshot(hs ...*hooks.Hooks) *hooks.Set {
	set := hooks.Snapshot(hs...).WithSiteValues(t.siteValue).WithScratch(t.bufs.alloc, t.bufs.give)
	if err := set.Check(t.NLayers(), t.HasSite); errors.Is(err, hooks.ErrAbsentSite) {
		set.Fail(fmt.Errorf("%w (model %s): %w", ErrNoPoint, t.man.Name, err))
	}
	return set
}

// Manifest describes the exported model.
func (t *Transformer) Manifest() *export.Manifest { return t.man }

// Dir is the exported directory.
func (t *Transformer) Dir() string { return t.dir }

// Engine is the runtime engine (plans and sessions).
func (t *Transformer) Engine() *runtime.Engine { return t.eng }

// NLayers is the number of layers.
func (t *Transformer) NLayers() int { return t.man.Config.NLayers }

// HasSite reports whether the model carries a hook site.
func (t *Transformer) HasSite(s hooks.Site) bool {
	_, ok := t.points[s]
	return ok
}

// Sites lists the model's hook sites in call order.
func (t *Transformer) Sites() []hooks.Site {
	uses := map[hooks.Site]hooks.Use{}
	for s := range t.points {
		uses[s] = hooks.Read
	}
	return hooks.SitesInOrder(uses, t.NLayers())
}

// PadSide says where pads go in a batch of rows of different lengths.
type PadSide int

// Pad sides.
const (
	PadRight PadSide = iota // the activation server's choice
	PadLeft                 // sampling's choice
)

// ParsePadSide parses "right" or "left".
func ParsePadSide(s string) (PadSide, error) {
	switch s {
	case "", "right":
		return PadRight, nil
	case "left":
		return PadLeft, nil
	}
	return 0, fmt.Errorf("pad side %q: want right or left", s)
}

// Filter selects hook sites to capture: nil Points means all points, nil
// Layers all layers. All points include the sae.* points, which are
// captured wherever an autoencoder is spliced in (sae.Splice) at a selected
// layer and skipped elsewhere.
type Filter struct {
	Points []hooks.Point
	Layers []int
}

// AllPoints captures every hook point of the model.
var AllPoints = &Filter{}

func (f *Filter) sites(t *Transformer) ([]hooks.Site, error) {
	pts := f.Points
	explicit := pts != nil
	if pts == nil {
		pts = append(hooks.Points(), hooks.SAELatents, hooks.SAEReconstruction, hooks.SAEError)
	}
	layers := f.Layers
	if layers == nil {
		for l := 0; l < t.NLayers(); l++ {
			layers = append(layers, l)
		}
	}
	var out []hooks.Site
	for _, p := range pts {
		cands := []hooks.Site{{Point: p, Layer: -1}}
		if p.PerLayer() {
			cands = cands[:0]
			for _, l := range layers {
				if l < 0 || l >= t.NLayers() {
					return nil, fmt.Errorf("layer %d out of range [0,%d)", l, t.NLayers())
				}
				cands = append(cands, hooks.Site{Point: p, Layer: l})
			}
		}
		for _, s := range cands {
			if t.HasSite(s) || s.Point.IsSAE() {
				out = append(out, s)
			} else if explicit {
				return nil, fmt.Errorf("%w: %s (model %s)", ErrNoPoint, s, t.man.Name)
			}
		}
	}
	return out, nil
}

type forwardConfig struct {
	hooks   []*hooks.Hooks
	pad     PadSide
	capture *Filter
	partial *partialRun // StopAtLayer / StartAtLayer (partial.go)
}

// ForwardOption configures one Forward call.
type ForwardOption func(*forwardConfig)

// WithHooks runs the pass with these hooks (in order).
func WithHooks(h ...*hooks.Hooks) ForwardOption {
	return func(c *forwardConfig) { c.hooks = append(c.hooks, h...) }
}

// WithPad sets the pad side for rows of different lengths (default right).
func WithPad(s PadSide) ForwardOption { return func(c *forwardConfig) { c.pad = s } }

// Capture returns the values of the selected hook points in
// Output.Activations. Points only read cost no cut: they become extra
// outputs of the graphs, which ONNX Runtime writes straight into Go memory
// (memory an earlier Output.Release gave back, or new) where the run knows
// their shapes beforehand; the others (under 4 KiB, transposed, or made by
// hooks) are copied.
func Capture(f *Filter) ForwardOption { return func(c *forwardConfig) { c.capture = f } }

// Output is the result of a forward pass.
type Output struct {
	Logits      *hooks.Tensor                // [B,T,V]
	Activations map[hooks.Site]*hooks.Tensor // captured hook points, shapes as in docs/behaviour.md §3.2
	Pad         [][]bool                     // [B][T], true at pads
	Resid       *hooks.Tensor                // [B,T,D] after StopAtLayer (Logits is then nil)
	pool        *bufPool                     // where Release gives the memory back
}

// Batch is token rows padded to one length.
type Batch struct {
	Tokens [][]int
	Pad    [][]bool
}

// PadRows pads rows of token ids to the longest (pads are token 0 with the
// pad flag set, as the original's prep_input_and_pad).
func PadRows(rows [][]int, side PadSide) Batch {
	T := 0
	for _, r := range rows {
		if len(r) > T {
			T = len(r)
		}
	}
	b := Batch{Tokens: make([][]int, len(rows)), Pad: make([][]bool, len(rows))}
	for i, r := range rows {
		toks := make([]int, T)
		pad := make([]bool, T)
		off := 0
		if side == PadLeft {
			off = T - len(r)
		}
		for j := range toks {
			k := j - off
			if k < 0 || k >= len(r) {
				pad[j] = true
			} else {
				toks[j] = r[k]
			}
		}
		b.Tokens[i], b.Pad[i] = toks, pad
	}
	return b
}

func (t *Transformer) checkRows(rows [][]int) error {
	if len(rows) == 0 {
		return ErrEmptyBatch
	}
	V, ctxLen := t.man.Config.NVocab, t.man.Config.NCtx
	for i, r := range rows {
		if len(r) == 0 {
			return fmt.Errorf("%w: row %d has no tokens", ErrEmptyBatch, i)
		}
		if ctxLen > 0 && len(r) > ctxLen {
			return fmt.Errorf("%w: row %d has %d tokens, the model's context window is %d", ErrTooLong, i, len(r), ctxLen)
		}
		for j, id := range r {
			if id < 0 || (V > 0 && id >= V) {
				return fmt.Errorf("%w: row %d position %d holds %d, the vocabulary is [0,%d)", ErrTokenOutOfRange, i, j, id, V)
			}
		}
		if t.man.Inputs.Pad == "" && len(r) != len(rows[0]) {
			return fmt.Errorf("%w (model %s): row %d has %d tokens, row 0 has %d", ErrRagged, t.man.Name, i, len(r), len(rows[0]))
		}
	}
	return nil
}

// inputs builds the graph inputs of a first pass (no cache) over a batch.
func (t *Transformer) inputs(b Batch) map[string]*runtime.Tensor {
	B, T := len(b.Tokens), len(b.Tokens[0])
	toks := make([]int64, 0, B*T)
	pad := make([]bool, 0, B*T)
	for i := range b.Tokens {
		for j := range b.Tokens[i] {
			toks = append(toks, int64(b.Tokens[i][j]))
			pad = append(pad, b.Pad[i][j])
		}
	}
	in := map[string]*runtime.Tensor{
		t.man.Inputs.Tokens: {Shape: []int64{int64(B), int64(T)}, I64: toks},
	}
	if t.man.Inputs.Pad != "" {
		in[t.man.Inputs.Pad] = &runtime.Tensor{Shape: []int64{int64(B), int64(T)}, Bool: pad}
	}
	if t.man.Inputs.PrevLens != "" {
		in[t.man.Inputs.PrevLens] = &runtime.Tensor{Shape: []int64{int64(B), 1}, I64: make([]int64, B)}
	}
	for _, kv := range t.man.KVCache {
		empty := &runtime.Tensor{Shape: []int64{int64(B), 0, int64(kv.Width)}, F32: []float32{}}
		in[kv.PastK], in[kv.PastV] = empty, empty
	}
	return in
}

// Forward runs a batch of token rows (padded on the chosen side when their
// lengths differ) and returns the logits [B,T,V] and any captured points.
// Hooks see padded positions too, as in the original.
func (t *Transformer) Forward(ctx context.Context, rows [][]int, opts ...ForwardOption) (*Output, error) {
	var c forwardConfig
	for _, o := range opts {
		o(&c)
	}
	if err := t.checkRows(rows); err != nil {
		return nil, err
	}
	batch := PadRows(rows, c.pad)
	out := &Output{Pad: batch.Pad, pool: &t.bufs}
	hs := c.hooks
	var inGraph []hooks.Site
	if c.capture != nil {
		sites, err := c.capture.sites(t)
		if err != nil {
			return nil, err
		}
		out.Activations = map[hooks.Site]*hooks.Tensor{}
		// The graph's points are captured by the run, written straight
		// into pooled memory where it can (runtime.Request.Alloc); points
		// only hooks make (a spliced autoencoder's), and every point of a
		// partial run, are copied by an observer.
		var copied []hooks.Site
		for _, s := range sites {
			if _, ok := t.points[s]; ok && c.partial == nil {
				inGraph = append(inGraph, s)
			} else {
				copied = append(copied, s)
			}
		}
		hs = t.copyingObservers(hs, copied, func(s hooks.Site, x *hooks.Tensor) { out.Activations[s] = t.bufs.clone(x) })
	}
	req := runtime.Request{
		Inputs:  t.inputs(batch),
		Outputs: []string{t.man.Inputs.Logits},
		Hooks:   t.snapshot(hs...),
		Capture: inGraph,
		Alloc:   t.bufs.alloc,
		Free:    t.bufs.give,
	}
	if err := t.applyPartial(c.partial, batch, &req); err != nil {
		return nil, err
	}
	// The logits go into memory an earlier Output gave back, where there
	// is some of their size.
	var into []float32
	if c.partial == nil {
		if into = t.bufs.take(t.logitsLen(batch)); into != nil {
			req.Into = map[string][]float32{t.man.Inputs.Logits: into}
		}
	}
	res, err := t.eng.RunKeep(ctx, req)
	if err != nil {
		t.bufs.give(into)
		return nil, err
	}
	t.takeCaptured(res, out.Activations)
	res.Close()
	if t.partialOutput(c.partial, res.Tensors, out) {
		return out, nil
	}
	lg := res.Tensors[t.man.Inputs.Logits]
	if into != nil && !sameSlice(lg.F32, into) {
		t.bufs.give(into)
	}
	out.Logits = &hooks.Tensor{Shape: toInts(lg.Shape), Data: lg.F32}
	return out, nil
}

// copyingObservers adds to hs an observer of each site that hands keep
// the site's tensor (trusted: keep copies what it keeps).
func (t *Transformer) copyingObservers(hs []*hooks.Hooks, sites []hooks.Site, keep func(hooks.Site, *hooks.Tensor)) []*hooks.Hooks {
	if len(sites) == 0 {
		return hs
	}
	obs := hooks.New()
	for _, s := range sites {
		s := s
		opts := []hooks.Option{hooks.Trusted()}
		if s.Point.PerLayer() {
			opts = append(opts, hooks.AtLayers(s.Layer))
		}
		obs.Observe(s.Point, func(_ *hooks.Context, x *hooks.Tensor) error {
			keep(s, x)
			return nil
		}, opts...)
	}
	return append(append([]*hooks.Hooks{}, hs...), obs)
}

// takeCaptured moves a run's captured tensors into acts before the result
// is closed: those written into pooled memory as they are (ownBuffers),
// the others copied into pooled memory.
func (t *Transformer) takeCaptured(res *runtime.Result, acts map[hooks.Site]*hooks.Tensor) {
	owns := ownBuffers(res)
	for s, x := range res.Captured {
		if owns[s] {
			acts[s] = x
		} else {
			acts[s] = t.bufs.clone(x)
		}
	}
}

// ownBuffers names the captured sites whose tensors own pooled Go memory
// (runtime.Result.InGo): of sites sharing one tensor, and so one buffer,
// only the first, so that a buffer goes back to the pool once and no two
// copied Activations alias.
func ownBuffers(res *runtime.Result) map[hooks.Site]bool {
	owns := map[hooks.Site]bool{}
	given := map[*float32]bool{}
	for s, x := range res.Captured {
		if res.InGo(s) && len(x.Data) > 0 && !given[&x.Data[0]] {
			given[&x.Data[0]] = true
			owns[s] = true
		}
	}
	return owns
}

// logitsLen is the number of logits of a batch.
func (t *Transformer) logitsLen(b Batch) int {
	if len(b.Tokens) == 0 {
		return 0
	}
	return len(b.Tokens) * len(b.Tokens[0]) * t.man.Config.NVocab
}

func toInts(s []int64) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}
