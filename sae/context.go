package sae

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/vocab"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Errors of autoencoder contexts.
var (
	ErrNoLayer           = errors.New("no autoencoder for this layer")
	ErrNotLoaded         = errors.New("no autoencoder loaded yet")
	ErrBadConfig         = errors.New("bad autoencoder config")
	ErrDuplicateNodeType = errors.New("two autoencoder contexts of one node type")
	ErrNoContext         = errors.New("no autoencoder context")
)

// Input is what an autoencoder family reads: the original's derived scalar
// type of the SAE input ("dst").
type Input string

// The inputs of the original's autoencoders.
const (
	MLPPostAct     Input = "mlp_post_act"     // mlp.post_act [B,T,d_ff]
	ResidDeltaMLP  Input = "resid_delta_mlp"  // resid.torso.delta_mlp [B,T,d_model]
	ResidDeltaAttn Input = "resid_delta_attn" // resid.torso.delta_attn [B,T,d_model]
	// Upstream sparse_autoencoder's v5 SAEs read the residual stream.
	ResidPostMLP  Input = "resid_post_mlp"  // resid.torso.post_mlp [B,T,d_model]
	ResidPostAttn Input = "resid_post_attn" // resid.torso.post_attn [B,T,d_model]
)

// Point is the hook point the input is read at, and where the autoencoder
// is spliced.
func (i Input) Point() hooks.Point {
	switch i {
	case MLPPostAct:
		return hooks.MLP.PostAct
	case ResidDeltaMLP:
		return hooks.Resid.Torso.DeltaMLP
	case ResidDeltaAttn:
		return hooks.Resid.Torso.DeltaAttn
	case ResidPostMLP:
		return hooks.Resid.Torso.PostMLP
	case ResidPostAttn:
		return hooks.Resid.Torso.PostAttn
	}
	return 0
}

// InputAt returns the input read at a hook point, if autoencoders read it.
func InputAt(p hooks.Point) (Input, bool) {
	for _, i := range []Input{MLPPostAct, ResidDeltaMLP, ResidDeltaAttn, ResidPostMLP, ResidPostAttn} {
		if i.Point() == p {
			return i, true
		}
	}
	return "", false
}

// NodeType is the kind of latent an autoencoder context provides: the
// shared vocabulary's node type.
type NodeType = vocab.NodeType

// Node types of autoencoder latents.
const (
	AutoencoderLatent          = vocab.NodeAutoencoderLatent // any: the single context
	MLPAutoencoderLatent       = vocab.NodeMLPAutoencoderLatent
	AttentionAutoencoderLatent = vocab.NodeAttentionAutoencoderLatent
)

// NodeType is the node type of the input's latents: MLP for mlp_post_act and
// resid_delta_mlp, attention for resid_delta_attn.
func (i Input) NodeType() NodeType {
	if i == ResidDeltaAttn || i == ResidPostAttn {
		return AttentionAutoencoderLatent
	}
	return MLPAutoencoderLatent
}

// Config is one autoencoder family: its input and where each layer's
// autoencoder is (a .pt file, a converted folder, or an az:// / https
// location). It is the original's AutoencoderSpec / AutoencoderConfig.
type Config struct {
	Input Input
	Paths map[int]string
}

// Validate checks the config: a known input and at least one path.
func (c Config) Validate() error {
	if !c.Input.Point().Valid() {
		return fmt.Errorf("%w: input %q (want mlp_post_act, resid_delta_mlp, resid_delta_attn, resid_post_mlp or resid_post_attn)", ErrBadConfig, c.Input)
	}
	if len(c.Paths) == 0 {
		return fmt.Errorf("%w: no autoencoder paths", ErrBadConfig)
	}
	for l, p := range c.Paths {
		if l < 0 || p == "" {
			return fmt.Errorf("%w: layer %d: path %q", ErrBadConfig, l, p)
		}
	}
	return nil
}

// OmitDeadLatents makes a context's Warmup trim every autoencoder to
// N − (fewest dead latents of any layer), as the activation server does.
func OmitDeadLatents() Option { return func(o *options) { o.omitDead = true } }

// AutoencoderContext is one autoencoder family over a set of layers, loaded
// on demand and cached by path (the original's AutoencoderContext). It is
// safe for concurrent use; Close releases every autoencoder it loaded.
type AutoencoderContext struct {
	cfg  Config
	opts options

	mu      sync.Mutex
	byPath  map[string]*Autoencoder
	first   *Autoencoder // the first loaded: NumDirections reads it
	trimmed bool
	closed  bool
}

// NewAutoencoderContext makes a context; nothing is loaded until Get or
// Warmup.
func NewAutoencoderContext(cfg Config, opts ...Option) (*AutoencoderContext, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	paths := make(map[int]string, len(cfg.Paths))
	for l, p := range cfg.Paths {
		paths[l] = p
	}
	cfg.Paths = paths
	return &AutoencoderContext{cfg: cfg, opts: collect(opts), byPath: map[string]*Autoencoder{}}, nil
}

// Input is the family's input.
func (c *AutoencoderContext) Input() Input { return c.cfg.Input }

// NodeType is the node type of the family's latents.
func (c *AutoencoderContext) NodeType() NodeType { return c.cfg.Input.NodeType() }

// Layers lists the layers that have an autoencoder, in order.
func (c *AutoencoderContext) Layers() []int {
	ls := make([]int, 0, len(c.cfg.Paths))
	for l := range c.cfg.Paths {
		ls = append(ls, l)
	}
	sort.Ints(ls)
	return ls
}

// Path is where a layer's autoencoder is loaded from.
func (c *AutoencoderContext) Path(layer int) (string, bool) {
	p, ok := c.cfg.Paths[layer]
	return p, ok
}

// Get returns the autoencoder of a layer, loading it on first use (the
// original's get_autoencoder). The context owns it: do not Close it.
func (c *AutoencoderContext) Get(ctx context.Context, layer int) (*Autoencoder, error) {
	path, ok := c.cfg.Paths[layer]
	if !ok {
		return nil, fmt.Errorf("%w: layer %d (%s has layers %v)", ErrNoLayer, layer, c.cfg.Input, c.Layers())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if ae, ok := c.byPath[path]; ok {
		return ae, nil
	}
	ae, err := Open(ctx, path, optionList(c.opts)...)
	if err != nil {
		return nil, fmt.Errorf("%s layer %d: %w", c.cfg.Input, layer, err)
	}
	c.byPath[path] = ae
	if c.first == nil {
		c.first = ae
	}
	return ae, nil
}

func optionList(o options) []Option { return []Option{func(dst *options) { *dst = o }} }

// NumDirections is the number of latents of the first autoencoder loaded
// (the original's num_autoencoder_directions); ErrNotLoaded before any.
func (c *AutoencoderContext) NumDirections() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first == nil {
		return 0, ErrNotLoaded
	}
	return c.first.NLatents, nil
}

// Warmup loads every layer. With OmitDeadLatents it then trims all of them
// to N − min(dead latents per layer), keeping the first latents (see Trim:
// pre_bias and the activation are kept, which the original forgets).
func (c *AutoencoderContext) Warmup(ctx context.Context) error {
	for _, l := range c.Layers() {
		if _, err := c.Get(ctx, l); err != nil {
			return err
		}
	}
	if !c.opts.omitDead {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.trimmed {
		return nil
	}
	minDead := -1
	for _, ae := range c.byPath {
		dead, err := ae.DeadLatents()
		if err != nil {
			return err
		}
		if minDead < 0 || dead < minDead {
			minDead = dead
		}
	}
	c.trimmed = true
	if minDead <= 0 {
		return nil
	}
	trimmed := map[string]*Autoencoder{}
	for path, ae := range c.byPath {
		t, err := ae.Trim(ae.NLatents - minDead)
		if err != nil {
			for _, t := range trimmed {
				t.Close()
			}
			c.trimmed = false
			return fmt.Errorf("omit dead latents: %w", err)
		}
		trimmed[path] = t
	}
	var errs []error
	for path, ae := range c.byPath {
		if ae == c.first {
			c.first = trimmed[path]
		}
		errs = append(errs, ae.Close())
	}
	c.byPath = trimmed
	return errors.Join(errs...)
}

// Splice splices every layer's autoencoder at its input point (loading
// them), as the activation server's autoencoder subgraph. Remove undoes all.
func (c *AutoencoderContext) Splice(ctx context.Context, h *hooks.Hooks, addError bool) (remove func(), err error) {
	var removes []func()
	remove = func() {
		for _, r := range removes {
			r()
		}
	}
	for _, l := range c.Layers() {
		ae, err := c.Get(ctx, l)
		if err != nil {
			remove()
			return func() {}, err
		}
		removes = append(removes, Splice(h, ae, hooks.Site{Point: c.cfg.Input.Point(), Layer: l}, addError))
	}
	return remove, nil
}

// Close releases every autoencoder the context loaded.
func (c *AutoencoderContext) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, ae := range c.byPath {
		errs = append(errs, ae.Close())
	}
	c.byPath, c.first = nil, nil
	return errors.Join(errs...)
}

// MultiAutoencoderContext holds at most one autoencoder context per node
// type: one MLP and one attention family (the original's
// MultiAutoencoderContext).
type MultiAutoencoderContext struct {
	byType map[NodeType]*AutoencoderContext
	order  []NodeType
}

// NewMultiAutoencoderContext combines contexts of different node types
// (from_autoencoder_context_list); two of one type is ErrDuplicateNodeType.
// It takes ownership: its Close closes them.
func NewMultiAutoencoderContext(ctxs ...*AutoencoderContext) (*MultiAutoencoderContext, error) {
	m := &MultiAutoencoderContext{byType: map[NodeType]*AutoencoderContext{}}
	for _, c := range ctxs {
		if c == nil {
			continue
		}
		nt := c.NodeType()
		if _, dup := m.byType[nt]; dup {
			return nil, fmt.Errorf("%w: %s", ErrDuplicateNodeType, nt)
		}
		m.byType[nt] = c
		m.order = append(m.order, nt)
	}
	return m, nil
}

// Contexts lists the contexts in the order given.
func (m *MultiAutoencoderContext) Contexts() []*AutoencoderContext {
	out := make([]*AutoencoderContext, len(m.order))
	for i, nt := range m.order {
		out[i] = m.byType[nt]
	}
	return out
}

// HasSingle reports whether there is exactly one context.
func (m *MultiAutoencoderContext) HasSingle() bool { return len(m.order) == 1 }

// Single returns the only context, or ErrNoContext when there are none or
// several.
func (m *MultiAutoencoderContext) Single() (*AutoencoderContext, error) {
	if len(m.order) != 1 {
		return nil, fmt.Errorf("%w: want exactly one, have %d", ErrNoContext, len(m.order))
	}
	return m.byType[m.order[0]], nil
}

// Context returns the context of a node type; "" and AutoencoderLatent ask
// for the single context (get_autoencoder_context). A missing type is
// ErrNoContext.
func (m *MultiAutoencoderContext) Context(nt NodeType) (*AutoencoderContext, error) {
	if nt == "" || nt == AutoencoderLatent {
		return m.Single()
	}
	c, ok := m.byType[nt]
	if !ok {
		return nil, fmt.Errorf("%w for %s", ErrNoContext, nt)
	}
	return c, nil
}

// Get returns the autoencoder of a layer from the context of a node type.
func (m *MultiAutoencoderContext) Get(ctx context.Context, layer int, nt NodeType) (*Autoencoder, error) {
	c, err := m.Context(nt)
	if err != nil {
		return nil, err
	}
	return c.Get(ctx, layer)
}

// Warmup warms every context.
func (m *MultiAutoencoderContext) Warmup(ctx context.Context) error {
	for _, c := range m.Contexts() {
		if err := c.Warmup(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Splice splices every context's autoencoders (see AutoencoderContext.Splice).
func (m *MultiAutoencoderContext) Splice(ctx context.Context, h *hooks.Hooks, addError bool) (remove func(), err error) {
	var removes []func()
	remove = func() {
		for _, r := range removes {
			r()
		}
	}
	for _, c := range m.Contexts() {
		r, err := c.Splice(ctx, h, addError)
		if err != nil {
			remove()
			return func() {}, err
		}
		removes = append(removes, r)
	}
	return remove, nil
}

// Close closes every context.
func (m *MultiAutoencoderContext) Close() error {
	var errs []error
	for _, c := range m.Contexts() {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
