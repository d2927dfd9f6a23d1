package modelctx

import (
	"errors"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// Partial runs: Forward may stop at the input of a layer (StopAtLayer) and
// may start at a layer from a residual stream the caller gives
// (StartAtLayer). The engine plans only the nodes between the two, so a
// partial run costs the layers it runs; hooks of the sites in between work
// as in a full pass, and the two compose to one full pass exactly.

// ErrPartial reports a partial run that does not fit the model or batch.
var ErrPartial = errors.New("bad partial run")

type partialRun struct {
	start, stop       int // layers
	hasStart, hasStop bool
	resid             *hooks.Tensor
}

func (c *forwardConfig) partialRun() *partialRun {
	if c.partial == nil {
		c.partial = &partialRun{}
	}
	return c.partial
}

// StopAtLayer ends the pass before layer l: Output.Resid is the residual
// stream after layer l-1, the input of layer l (l = 0: resid.post_emb;
// l = NLayers: the final residual, before the final norm), and nothing after
// it runs (Output.Logits is nil).
func StopAtLayer(l int) ForwardOption {
	return func(c *forwardConfig) {
		p := c.partialRun()
		p.stop, p.hasStop = l, true
	}
}

// StartAtLayer starts the pass at layer l from resid [B,T,D], the residual
// stream entering layer l (l = NLayers: only the final norm and the
// unembedding run). The rows still give the batch's shape and pad mask;
// hooks of the sites before layer l are not called.
func StartAtLayer(l int, resid *hooks.Tensor) ForwardOption {
	return func(c *forwardConfig) {
		p := c.partialRun()
		p.start, p.hasStart, p.resid = l, true, resid
	}
}

// ResidualSite is the site that carries the residual stream into layer l:
// resid.post_emb for l = 0, else resid.torso.post_mlp of layer l-1
// (l = NLayers: the final residual).
func (t *Transformer) ResidualSite(l int) (hooks.Site, error) {
	if l < 0 || l > t.NLayers() {
		return hooks.Site{}, fmt.Errorf("%w: layer %d out of range [0,%d]", ErrPartial, l, t.NLayers())
	}
	s := t.resid[l]
	if !t.HasSite(s) {
		return hooks.Site{}, fmt.Errorf("%w: %w: %s (model %s)", ErrPartial, ErrNoPoint, s, t.man.Name)
	}
	return s, nil
}

// residualSites lists the sites that carry the residual stream into each
// layer and, last, the final residual: the manifest's boundaries where its
// architecture recorded them, else the vocabulary's residual points
// (resid.post_emb, then resid.torso.post_mlp of each layer), as imported
// graphs map them. The planner's stage boundaries and the partial runs'
// ends are these sites.
func residualSites(m *export.Manifest) ([]hooks.Site, error) {
	n := max(0, m.Config.NLayers)
	out := make([]hooks.Site, n+1)
	for l := range out {
		out[l] = hooks.ResidualInto(l)
	}
	if len(m.Boundaries) == 0 {
		return out, nil
	}
	if len(m.Boundaries) != n {
		return nil, fmt.Errorf("manifest lists %d residual boundaries for %d layers", len(m.Boundaries), n)
	}
	for l, b := range m.Boundaries {
		site, err := hooks.ParseSite(b)
		if err != nil {
			return nil, fmt.Errorf("boundary %w", err)
		}
		out[l] = site
	}
	return out, nil
}

// applyPartial turns the partial-run options into the request's span: the
// start's residual among the inputs, the stop's tensor as the only output.
func (t *Transformer) applyPartial(p *partialRun, b Batch, req *runtime.Request) error {
	if p == nil {
		return nil
	}
	if p.hasStart && p.hasStop && p.stop <= p.start {
		return fmt.Errorf("%w: stop at layer %d is not after the start at layer %d", ErrPartial, p.stop, p.start)
	}
	if p.hasStart {
		site, err := t.ResidualSite(p.start)
		if err != nil {
			return err
		}
		B, T, D := len(b.Tokens), len(b.Tokens[0]), t.man.Config.DModel
		r := p.resid
		if r == nil || len(r.Shape) != 3 || r.Shape[0] != B || r.Shape[1] != T || (D > 0 && r.Shape[2] != D) || len(r.Data) != r.Numel() {
			got := "nil"
			if r != nil {
				got = fmt.Sprint(r.Shape)
			}
			return fmt.Errorf("%w: start residual is %s, want [%d %d %d] (rows x tokens x d_model)", ErrPartial, got, B, T, D)
		}
		req.StartAt = &site
		req.Inputs[t.points[site].Tensor] = &runtime.Tensor{Shape: []int64{int64(B), int64(T), int64(r.Shape[2])}, F32: r.Data}
	}
	if p.hasStop {
		site, err := t.ResidualSite(p.stop)
		if err != nil {
			return err
		}
		req.StopAt = &site
		req.Outputs = []string{t.points[site].Tensor}
	}
	return nil
}

// partialOutput fills Output.Resid of a run that stopped early.
func (t *Transformer) partialOutput(p *partialRun, res map[string]*runtime.Tensor, out *Output) bool {
	if p == nil || !p.hasStop {
		return false
	}
	site, _ := t.ResidualSite(p.stop) // checked by applyPartial
	r := res[t.points[site].Tensor]
	out.Resid = &hooks.Tensor{Shape: toInts(r.Shape), Data: r.F32}
	return true
}
