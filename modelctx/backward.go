package modelctx

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// BackwardOption configures one Backward call. The forward options
// (WithHooks, WithPad, Capture) are backward options too: hooks registered
// with hooks.InStage(hooks.Bwd) run on gradients, the others on the forward
// pass, and Capture returns forward values beside the gradients.
type BackwardOption interface{ applyBackward(*backwardConfig) }

type backwardConfig struct {
	fwd   forwardConfig
	grads *Filter
	stop  []hooks.Site
	stopF []func(*Transformer) []hooks.Site
}

func (o ForwardOption) applyBackward(c *backwardConfig) { o(&c.fwd) }

type backwardOption func(*backwardConfig)

func (o backwardOption) applyBackward(c *backwardConfig) { o(c) }

// GradsAt selects the sites whose gradients Backward returns (default: every
// hook point of the model).
func GradsAt(f *Filter) BackwardOption {
	return backwardOption(func(c *backwardConfig) { c.grads = f })
}

// StopGradient detaches at these sites: their own gradient is still
// computed, but nothing flows upstream of them (the original's x.detach()).
func StopGradient(sites ...hooks.Site) BackwardOption {
	return backwardOption(func(c *backwardConfig) { c.stop = append(c.stop, sites...) })
}

// DetachLayerNormScale stops gradients at the scale of every LayerNorm, as
// the original's attribution code does (DETACH_LAYER_NORM_SCALE).
func DetachLayerNormScale() BackwardOption {
	return backwardOption(func(c *backwardConfig) {
		c.stopF = append(c.stopF, func(t *Transformer) []hooks.Site {
			return t.sitesOf(hooks.LnAttnScale, hooks.LnMLPScale, hooks.LnFScale)
		})
	})
}

// DetachQKV stops gradients at attn.q, attn.k and attn.v of every layer, as
// the original's attention reconstitution does.
func DetachQKV() BackwardOption {
	return backwardOption(func(c *backwardConfig) {
		c.stopF = append(c.stopF, func(t *Transformer) []hooks.Site {
			return t.sitesOf(hooks.AttnQ, hooks.AttnK, hooks.AttnV)
		})
	})
}

// sitesOf lists the model's sites of these points, every layer.
func (t *Transformer) sitesOf(points ...hooks.Point) []hooks.Site {
	var out []hooks.Site
	for _, p := range points {
		if !p.PerLayer() {
			if s := (hooks.Site{Point: p, Layer: -1}); t.HasSite(s) {
				out = append(out, s)
			}
			continue
		}
		for l := 0; l < t.NLayers(); l++ {
			if s := (hooks.Site{Point: p, Layer: l}); t.HasSite(s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Grads is the result of a backward pass.
type Grads struct {
	// Loss is the value of the loss.
	Loss float64
	// Logits are the forward logits [B,T,V] when the loss is on them and
	// they were computed in full: a logit loss reads one position per row,
	// so the logits of the other positions are computed only when the
	// logits point has hooks (Capture of the logits, for example).
	Logits *hooks.Tensor
	// Grads holds d(loss)/d(value) at each selected site, shaped as the
	// site's value (docs/behaviour.md §3.2): the gradient that site's bwd hooks receive,
	// before they run. Sites no gradient reaches (downstream
	// of an activation loss, or cut off by a stop) hold zeros.
	Grads map[hooks.Site]*hooks.Tensor
	// Activations holds the forward values captured with Capture.
	Activations map[hooks.Site]*hooks.Tensor
	// Pad is the batch's pad mask [B][T], true at pads.
	Pad [][]bool
}

// Backward runs a forward pass over a batch of token rows and a backward
// pass from loss, and returns the gradients at the selected hook sites
// (every site by default). Hooks registered at the bwd stage see the
// gradient at their site in backward order (layers from last to first, and
// at one point the last registered first) and may replace it: what a hook
// returns flows on upstream.
//
// A writing fwd or fwd2 hook is treated as the identity by the backward
// pass (its gradient passes straight through) unless it registers its
// vector-Jacobian product with hooks.VJPOf; to reproduce the original, where
// an ablated slice gets no gradient, add the same ablation as a bwd hook.
func (t *Transformer) Backward(ctx context.Context, rows [][]int, loss Loss, opts ...BackwardOption) (*Grads, error) {
	c := backwardConfig{grads: AllPoints}
	for _, o := range opts {
		if o != nil {
			o.applyBackward(&c)
		}
	}
	if err := t.checkRows(rows); err != nil {
		return nil, err
	}
	root := loss.root()
	if !t.HasSite(root) {
		return nil, fmt.Errorf("%w: loss site %s (model %s)", ErrNoPoint, root, t.man.Name)
	}
	all, err := c.grads.sites(t)
	if err != nil {
		return nil, err
	}
	// The engine computes the gradients at the graph's sites; those at the
	// sae.* points are what their gradient hooks see inside a splice's VJP.
	var sites, saeSites []hooks.Site
	for _, s := range all {
		if s.Point.IsSAE() {
			saeSites = append(saeSites, s)
		} else {
			sites = append(sites, s)
		}
	}
	stop := append([]hooks.Site(nil), c.stop...)
	for _, f := range c.stopF {
		stop = append(stop, f(t)...)
	}
	for _, s := range stop {
		if !t.HasSite(s) {
			return nil, fmt.Errorf("%w: stop-gradient site %s (model %s)", ErrNoPoint, s, t.man.Name)
		}
	}
	batch := PadRows(rows, c.fwd.pad)
	out := &Grads{Pad: batch.Pad}
	hs := c.fwd.hooks
	if c.fwd.capture != nil {
		capture, acts, err := t.captureHooks(c.fwd.capture)
		if err != nil {
			return nil, err
		}
		out.Activations = acts
		hs = append(append([]*hooks.Hooks{}, hs...), capture)
	}
	saeGrads := map[hooks.Site]*hooks.Tensor{}
	if len(saeSites) > 0 {
		h := hooks.New()
		for _, s := range saeSites {
			s := s
			h.Observe(s.Point, func(_ *hooks.Context, g *hooks.Tensor) error {
				saeGrads[s] = g.Clone()
				return nil
			}, hooks.InStage(hooks.Bwd), hooks.AtLayers(s.Layer), hooks.Trusted())
		}
		hs = append(append([]*hooks.Hooks{}, hs...), h)
	}
	req := runtime.BackwardRequest{
		Inputs: t.inputs(batch),
		Hooks:  t.snapshot(hs...),
		Root:   root,
		Grads:  sites,
		Stop:   stop,
	}
	if loss.Kind == LossActivation {
		req.Seed = func(v *hooks.Tensor) (*hooks.Tensor, error) {
			val, g, err := loss.grad(v, batch.Pad)
			out.Loss = val
			return g, err
		}
	} else {
		// A logit loss reads one position per row: the engine computes the
		// logits of those rows only, unless the logits are hooked.
		rows, err := loss.rows(batch.Pad, len(batch.Tokens), len(batch.Tokens[0]))
		if err != nil {
			return nil, err
		}
		req.RootRows = rows
		req.SeedRows = func(v *hooks.Tensor) (*hooks.Tensor, error) {
			val, g, err := loss.gradRows(v)
			out.Loss = val
			return g, err
		}
	}
	res, err := t.eng.Backward(ctx, req)
	if err != nil {
		return nil, err
	}
	if root.Point == hooks.Logits && res.Root != nil {
		out.Logits = res.Root
	}
	out.Grads = res.Grads
	if len(saeGrads) > 0 && out.Grads == nil {
		out.Grads = map[hooks.Site]*hooks.Tensor{}
	}
	for s, g := range saeGrads {
		out.Grads[s] = g
	}
	return out, nil
}

// captureHooks makes observers that copy the values of the selected sites.
func (t *Transformer) captureHooks(f *Filter) (*hooks.Hooks, map[hooks.Site]*hooks.Tensor, error) {
	sites, err := f.sites(t)
	if err != nil {
		return nil, nil, err
	}
	acts := map[hooks.Site]*hooks.Tensor{}
	h := hooks.New()
	for _, s := range sites {
		s := s
		var o []hooks.Option
		if s.Point.PerLayer() {
			o = append(o, hooks.AtLayers(s.Layer))
		}
		h.Observe(s.Point, func(_ *hooks.Context, x *hooks.Tensor) error {
			acts[s] = x.Clone()
			return nil
		}, o...)
	}
	return h, acts, nil
}
