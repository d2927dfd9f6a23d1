package hooks

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
)

// Errors a run stops with when a hook misbehaves; each is wrapped in an error
// that names the hook point and layer.
var (
	ErrHookFailed = errors.New("hook returned an error")
	ErrHookPanic  = errors.New("hook panicked")
	ErrHookShape  = errors.New("hook returned a tensor of another shape")
	ErrBadOption  = errors.New("bad hook registration")
)

// Stage is where at a point a hook runs. The original calls fwd, then bwd
// (an identity in the forward pass that attaches a gradient hook), then fwd2;
// autoencoders are spliced in at fwd2.
type Stage int

const (
	Fwd  Stage = iota // forward hooks: read or edit the activation
	Bwd               // gradient hooks (used by backward passes)
	Fwd2              // second forward stage: after bwd, where SAEs are spliced
)

func (s Stage) String() string {
	switch s {
	case Fwd:
		return "fwd"
	case Bwd:
		return "bwd"
	case Fwd2:
		return "fwd2"
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// Context is what a hook receives besides the tensor: where it runs and the
// values bound at registration (the original's bound kwargs).
type Context struct {
	Site  Site
	Stage Stage
	vals  map[string]any
	set   *Set
}

// Set is the snapshot of hooks this call belongs to. A hook that computes
// nested points (an autoencoder splice calling the hooks of sae.latents,
// sae.reconstruction and sae.error) calls them through it, so that they run
// with every registration of the pass.
func (c *Context) Set() *Set {
	if c.set == nil {
		return &Set{}
	}
	return c.set
}

// Point is the hook point being called.
func (c *Context) Point() Point { return c.Site.Point }

// Layer is the layer (-1 for once points).
func (c *Context) Layer() int { return c.Site.Layer }

// Value returns a value bound with Bind, else one the model gives hooks at
// this site (see SiteValues), such as the MLP's out layer at mlp.post_act.
func (c *Context) Value(key string) (any, bool) {
	if v, ok := c.vals[key]; ok {
		return v, ok
	}
	if c.set != nil && c.set.siteVals != nil {
		return c.set.siteVals(c.Site, key)
	}
	return nil, false
}

// SiteValues gives the values a model hands its hooks at some sites (the
// original's extra kwargs, like out_layer at mlp.post_act).
type SiteValues func(site Site, key string) (any, bool)

// WithSiteValues makes f's values visible to the set's hooks through
// Context.Value, and returns the set.
func (s *Set) WithSiteValues(f SiteValues) *Set {
	s.siteVals = f
	return s
}

// Func is a hook that may edit the tensor: it returns the tensor to continue
// with (t itself after editing in place, or a new tensor of the same shape).
type Func func(ctx *Context, t *Tensor) (*Tensor, error)

// Observer is a read-only hook. The run guarantees it cannot change the
// forward pass: where the tensor it sees is also what the pass continues
// from, the observer gets a copy. A tensor the run only hands to the caller
// (the logits) it sees as it is: an observer that wrote to it would change
// what the run returns, nothing else.
type Observer func(ctx *Context, t *Tensor) error

// Option configures one registration.
type Option func(*entry)

// AtLayers restricts a hook to these layers (the original's AtLayers). It is
// an error on points that exist once per pass.
func AtLayers(layers ...int) Option {
	return func(e *entry) {
		if e.layers == nil {
			e.layers = map[int]bool{}
		}
		for _, l := range layers {
			e.layers[l] = true
		}
	}
}

// Bind attaches a value the hook reads back with Context.Value.
func Bind(key string, v any) Option {
	return func(e *entry) {
		if e.vals == nil {
			e.vals = map[string]any{}
		}
		if _, dup := e.vals[key]; dup {
			e.err = fmt.Errorf("%w: key %q bound twice", ErrBadOption, key)
		}
		e.vals[key] = v
	}
}

// Trusted marks an observer that promises to leave the tensor unchanged (it
// copies what it keeps, as Capture does): the run then hands it the live
// tensor instead of a protective copy. A trusted observer that writes anyway
// changes the pass.
func Trusted() Option { return func(e *entry) { e.trust = true } }

// InStage places the hook at another stage of the point (default Fwd).
func InStage(s Stage) Option { return func(e *entry) { e.stage = s } }

type entry struct {
	id     int
	point  Point
	stage  Stage
	layers map[int]bool // nil: every layer
	fn     Func
	obs    Observer
	vals   map[string]any
	trust  bool // observer promises not to modify: no protective copy
	err    error
}

func (e *entry) matches(s Site) bool {
	if e.point != s.Point {
		return false
	}
	return e.layers == nil || e.layers[s.Layer]
}

// Hooks is a set of hook registrations. It is safe for concurrent use; a run
// works on a snapshot taken when it starts.
type Hooks struct {
	mu      sync.RWMutex
	entries []*entry
	nextID  int
}

// New returns an empty hook set.
func New() *Hooks { return &Hooks{} }

// Add registers a hook that may edit the tensor at point p. The returned
// function removes it (safe to call more than once, usable with defer).
func (h *Hooks) Add(p Point, fn Func, opts ...Option) (remove func()) {
	return h.add(&entry{point: p, fn: fn}, opts)
}

// Observe registers a read-only hook at point p.
func (h *Hooks) Observe(p Point, fn Observer, opts ...Option) (remove func()) {
	return h.add(&entry{point: p, obs: fn}, opts)
}

// AddPath is Add by dot path ("mlp.post_act").
func (h *Hooks) AddPath(path string, fn Func, opts ...Option) (func(), error) {
	p, err := Parse(path)
	if err != nil {
		return func() {}, err
	}
	return h.Add(p, fn, opts...), nil
}

// ObservePath is Observe by dot path.
func (h *Hooks) ObservePath(path string, fn Observer, opts ...Option) (func(), error) {
	p, err := Parse(path)
	if err != nil {
		return func() {}, err
	}
	return h.Observe(p, fn, opts...), nil
}

func (h *Hooks) add(e *entry, opts []Option) func() {
	for _, o := range opts {
		o(e)
	}
	switch {
	case !e.point.Valid():
		e.err = fmt.Errorf("%w: invalid hook point %d", ErrBadOption, int(e.point))
	case e.fn == nil && e.obs == nil:
		e.err = fmt.Errorf("%w: nil hook function at %s", ErrBadOption, e.point)
	case e.layers != nil && !e.point.PerLayer():
		e.err = fmt.Errorf("%w: AtLayers on %s, which exists once per pass and has no layer", ErrBadOption, e.point)
	case e.stage < Fwd || e.stage > Fwd2:
		e.err = fmt.Errorf("%w: unknown stage %d", ErrBadOption, int(e.stage))
	}
	h.mu.Lock()
	h.nextID++
	e.id = h.nextID
	h.entries = append(h.entries, e)
	h.mu.Unlock()
	id := e.id
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, x := range h.entries {
			if x.id == id {
				h.entries = append(h.entries[:i:i], h.entries[i+1:]...)
				return
			}
		}
	}
}

// Len is the number of registrations.
func (h *Hooks) Len() int {
	if h == nil {
		return 0
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.entries)
}

// Use says how a run touches a site.
type Use int

const (
	Unused Use = iota
	Read       // only observers: the value is an extra output, no cut
	Write      // a hook may edit it: the graph is cut there
)

// Set is an immutable snapshot of one or more Hooks, taken at the start of a
// run: what the planner reads and what the executor calls.
type Set struct {
	entries []*entry
	scratch []float32 // reused for observers' protective copies
	take    func(n int) []float32
	give    func(...[]float32)
	stash   map[any]any // values hooks keep for the rest of the run
	// siteVals are the model's values at its sites (see WithSiteValues).
	siteVals SiteValues
	err      error // from Check
}

// WithScratch makes the set take the buffer for observers' protective
// copies from take (n float32s; a slice of another length is not used) and
// hand it to give when its run ends (DoneWithScratch), so that runs reuse
// it. It returns s.
func (s *Set) WithScratch(take func(n int) []float32, give func(...[]float32)) *Set {
	s.take, s.give = take, give
	return s
}

// DoneWithScratch gives the set's buffer for observers' protective copies
// to WithScratch's give (or drops it); the runtime calls it when a run
// ends. The set stays usable: a later copy takes a buffer again.
func (s *Set) DoneWithScratch() {
	if s == nil || len(s.scratch) == 0 {
		return
	}
	if s.give != nil {
		s.give(s.scratch)
	}
	s.scratch = nil
}

// Stash keeps v under key for the rest of the run the set serves: a hook
// that writes in the forward pass hands its VJP (see VJPOf) the forward
// values it needs this way. Keys are compared with ==; use a key type of
// your own.
func (s *Set) Stash(key, v any) {
	if s.stash == nil {
		s.stash = map[any]any{}
	}
	s.stash[key] = v
}

// Stashed returns what Stash kept under key in this run.
func (s *Set) Stashed(key any) (any, bool) {
	v, ok := s.stash[key]
	return v, ok
}

// Snapshot freezes the registrations of several hook sets, in order (the
// hooks of hs[0] run before those of hs[1] at the same point and stage).
// A Set serves one run at a time.
func Snapshot(hs ...*Hooks) *Set {
	s := &Set{}
	for _, h := range hs {
		if h == nil {
			continue
		}
		h.mu.RLock()
		s.entries = append(s.entries, h.entries...)
		h.mu.RUnlock()
	}
	return s
}

// Err returns the first registration error, if any.
func (s *Set) Err() error {
	if s.err != nil {
		return s.err
	}
	for _, e := range s.entries {
		if e.err != nil {
			return e.err
		}
	}
	return nil
}

// Empty reports whether the snapshot holds no forward hooks.
func (s *Set) Empty() bool {
	for _, e := range s.entries {
		if e.stage != Bwd {
			return false
		}
	}
	return true
}

// Uses resolves the forward (fwd and fwd2) registrations against a model with
// nLayers layers and lists each site they touch with how. The SAE points
// (sae.latents, ...) are not sites of the model's graph: the splice hook at
// the autoencoder's input point calls them, so they are left out.
func (s *Set) Uses(nLayers int) (map[Site]Use, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	uses := map[Site]Use{}
	for _, e := range s.entries {
		if e.stage == Bwd || e.point.IsSAE() {
			continue
		}
		use := Read
		if e.fn != nil {
			use = Write
		}
		for _, site := range e.sites(nLayers) {
			if uses[site] < use {
				uses[site] = use
			}
		}
	}
	return uses, nil
}

func (e *entry) sites(nLayers int) []Site {
	if !e.point.PerLayer() {
		return []Site{{Point: e.point, Layer: -1}}
	}
	var out []Site
	if e.layers == nil {
		for l := 0; l < nLayers; l++ {
			out = append(out, Site{Point: e.point, Layer: l})
		}
		return out
	}
	for l := range e.layers {
		if l >= 0 && l < nLayers {
			out = append(out, Site{Point: e.point, Layer: l})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Layer < out[j].Layer })
	return out
}

// SitesInOrder sorts sites in call order for a model of nLayers layers.
func SitesInOrder(uses map[Site]Use, nLayers int) []Site {
	out := make([]Site, 0, len(uses))
	for s := range uses {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Order(nLayers) < out[j].Order(nLayers) })
	return out
}

// Call runs the forward hooks at a site on t: the fwd hooks in registration
// order, then the fwd2 hooks. shared says whether t is also what the pass
// continues from without going through the writers (then observers get a
// copy). It returns the tensor to continue with. A hook that errs, panics or
// changes the shape stops the call with an error naming the site.
func (s *Set) Call(site Site, t *Tensor, shared bool) (*Tensor, error) {
	// The shape the site has on the way in is the shape it must keep: a hook
	// may edit its tensor's Shape in place, so the check cannot compare a
	// result with its own input.
	var buf [8]int
	want := append(buf[:0], t.Shape...)
	for _, stage := range []Stage{Fwd, Fwd2} {
		for _, e := range s.entries {
			if e.stage != stage || !e.matches(site) {
				continue
			}
			ctx := &Context{Site: site, Stage: stage, vals: e.vals, set: s}
			var err error
			t, shared, err = s.callEntry(e, ctx, t, shared, want)
			if err != nil {
				return nil, fmt.Errorf("%s hook at %s: %w", stage, describe(site), err)
			}
		}
	}
	return t, nil
}

// callEntry runs one registration on t. A writer's result replaces t once its
// shape is checked (t is then no longer shared); an observer sees t, or a
// protective copy when t is shared and the observer is not trusted.
func (s *Set) callEntry(e *entry, ctx *Context, t *Tensor, shared bool, want []int) (*Tensor, bool, error) {
	if e.fn == nil {
		view := t
		if shared && !e.trust {
			view = s.protect(t)
		}
		if err := callObserver(e.obs, ctx, view); err != nil {
			return t, shared, err
		}
		if err := checkShape(t, want); err != nil {
			return t, shared, fmt.Errorf("observer changed the tensor: %w", err)
		}
		return t, shared, nil
	}
	out, err := callFunc(e.fn, ctx, t)
	if err != nil {
		return t, shared, err
	}
	if err := checkShape(out, want); err != nil {
		return t, shared, err
	}
	return out, false, nil
}

// checkShape reports ErrHookShape unless t has exactly the shape want and
// as many values as that shape holds.
func checkShape(t *Tensor, want []int) error {
	if t != nil && len(t.Shape) == len(want) && len(t.Data) == numel(want) {
		same := true
		for i := range want {
			same = same && t.Shape[i] == want[i]
		}
		if same {
			return nil
		}
	}
	got := "nil"
	if t != nil {
		got = fmt.Sprintf("%v with %d values", t.Shape, len(t.Data))
	}
	return fmt.Errorf("%w: got %s, want %v", ErrHookShape, got, append([]int(nil), want...))
}

// protect copies t into the set's scratch buffer for an observer: the copy
// lives only for the call, as every tensor handed to a hook does, so one
// buffer serves every observer of a run without allocating. With
// WithScratch the buffer comes from, and goes back to, the caller's memory:
// a Set is taken per run, and the largest protected tensor (a residual
// stream a later segment reads, or a caller's input; the logits were, ~100 MB
// at 4x128 for GPT-2, before the runtime handed them over in place) would
// otherwise be fresh memory every run.
func (s *Set) protect(t *Tensor) *Tensor {
	if cap(s.scratch) < len(t.Data) {
		s.DoneWithScratch()
		if s.take != nil {
			s.scratch = s.take(len(t.Data))
		}
		if len(s.scratch) != len(t.Data) {
			s.scratch = make([]float32, len(t.Data))
		}
	}
	buf := s.scratch[:len(t.Data)]
	copy(buf, t.Data)
	return &Tensor{Shape: append([]int(nil), t.Shape...), Data: buf}
}

func describe(s Site) string {
	if s.Point.PerLayer() {
		return fmt.Sprintf("%s layer %d", s.Point.Path(), s.Layer)
	}
	return s.Point.Path()
}

func callFunc(fn Func, ctx *Context, t *Tensor) (out *Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrHookPanic, r, debug.Stack())
		}
	}()
	out, err = fn(ctx, t)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrHookFailed, err)
	}
	return out, err
}

func callObserver(fn Observer, ctx *Context, t *Tensor) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrHookPanic, r, debug.Stack())
		}
	}()
	if err = fn(ctx, t); err != nil {
		err = fmt.Errorf("%w: %w", ErrHookFailed, err)
	}
	return err
}
