package analysis

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// Cache is one captured forward pass: the logits and the hook points the
// analyses read (the residual stream at every layer boundary, each head's
// output, each attention and MLP output, the final norm's scale), with
// helpers that answer questions about it.
type Cache struct {
	m      *Model
	Tokens [][]int
	Logits *hooks.Tensor                // [B,T,V]
	Acts   map[hooks.Site]*hooks.Tensor // captured points, reference layouts
}

// cachedPoints are the points Run captures, where the model has them.
var cachedPoints = []hooks.Point{hooks.ResidPostEmb, hooks.AttnVOut, hooks.DeltaAttn, hooks.DeltaMLP, hooks.PostMLP, hooks.LnFScale}

// Run runs token rows (right-padded when their lengths differ) and keeps
// what the analyses read.
func (m *Model) Run(ctx context.Context, rows [][]int) (*Cache, error) {
	var pts []hooks.Point
	for _, p := range cachedPoints {
		s := hooks.Site{Point: p, Layer: -1}
		if p.PerLayer() {
			s.Layer = 0
		}
		if m.T.HasSite(s) {
			pts = append(pts, p)
		}
	}
	out, err := m.T.Forward(ctx, rows, modelctx.Capture(&modelctx.Filter{Points: pts}))
	if err != nil {
		return nil, fmt.Errorf("analysis run: %w", err)
	}
	return &Cache{m: m, Tokens: rows, Logits: out.Logits, Acts: out.Activations}, nil
}

// Get returns a captured site, or ErrMissingPoint.
func (c *Cache) Get(s hooks.Site) (*hooks.Tensor, error) {
	if t, ok := c.Acts[s]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("%w: %s (model %s)", ErrMissingPoint, s, c.m.T.Manifest().Name)
}

// ResidLabels names the rows of AccumulatedResid: the residual stream
// entering each layer and the final one.
func (c *Cache) ResidLabels() ([]string, error) {
	var labels []string
	for l := 0; l <= c.m.T.NLayers(); l++ {
		s, err := c.m.T.ResidualSite(l)
		if err != nil {
			return nil, err
		}
		labels = append(labels, s.String())
	}
	return labels, nil
}

// AccumulatedResid is the residual stream after the embedding and after
// each layer, [L+1,B,T,D] (row 0: resid.post_emb; row l+1: after layer l).
func (c *Cache) AccumulatedResid() (*hooks.Tensor, error) {
	L := c.m.T.NLayers()
	var out *hooks.Tensor
	for l := 0; l <= L; l++ {
		s, err := c.m.T.ResidualSite(l)
		if err != nil {
			return nil, err
		}
		r, err := c.Get(s)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = hooks.Zeros(append([]int{L + 1}, r.Shape...)...)
		}
		copy(out.Data[l*r.Numel():], r.Data)
	}
	return out, nil
}

// HeadResults is each head's output at one layer, [B,T,H,D]: the head's
// slice of attn.v_out through its slice of the attention output projection.
// Summed over heads, plus the output bias, it is resid.torso.delta_attn.
func (c *Cache) HeadResults(layer int) (*hooks.Tensor, error) {
	if err := c.m.checkLayers([]int{layer}); err != nil {
		return nil, err
	}
	v, err := c.Get(hooks.Site{Point: hooks.AttnVOut, Layer: layer})
	if err != nil {
		return nil, err
	}
	wo, err := c.m.weight(modelctx.WeightAttnToResidual, layer) // [H, dv, D]
	if err != nil {
		return nil, err
	}
	B, T, H, dv := v.Shape[0], v.Shape[1], v.Shape[2], v.Shape[3]
	if len(wo.Shape) != 3 || wo.Shape[0] != H || wo.Shape[1] != dv {
		return nil, fmt.Errorf("head results: attn.v_out is %v, the output projection %v", v.Shape, wo.Shape)
	}
	D := wo.Shape[2]
	out := hooks.Zeros(B, T, H, D)
	for bt := 0; bt < B*T; bt++ {
		for h := 0; h < H; h++ {
			dst := out.Data[(bt*H+h)*D : (bt*H+h+1)*D]
			src := v.Data[(bt*H+h)*dv : (bt*H+h+1)*dv]
			for k, a := range src {
				if a == 0 {
					continue
				}
				row := wo.Data[(h*dv+k)*D : (h*dv+k+1)*D]
				for d, w := range row {
					dst[d] += a * w
				}
			}
		}
	}
	return out, nil
}
