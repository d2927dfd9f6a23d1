package analysis

import (
	"context"
	"fmt"
	"math"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// SumTolerance is the largest error allowed between the sum of a
// decomposition's components and the residual stream, relative to the
// residual's largest magnitude.
const SumTolerance = 1e-5

// Decomposition is the final residual stream (before the final norm) as a
// sum of components.
type Decomposition struct {
	// Labels name the components: embed, pos_embed (where the model has a
	// position embedding), then per layer l either each head L{l}H{h} and
	// the attention output bias L{l}.attn_bias, or the whole attention
	// output L{l}.attn; then the MLP's output L{l}.mlp (its bias inside).
	Labels     []string
	Components *hooks.Tensor // [C,B,T,D]
	Resid      *hooks.Tensor // [B,T,D], the final residual stream
	// MaxError is the largest |sum of components - residual|.
	MaxError float64
}

// DecomposeResid splits the final residual stream into its components,
// per head (PerHead) or per layer (PerLayer), and checks that they add up
// to it within SumTolerance x max|resid| (else ErrDecomposition).
func (c *Cache) DecomposeResid(ctx context.Context, per Per) (*Decomposition, error) {
	if per != PerHead && per != PerLayer {
		return nil, fmt.Errorf("decompose: per %s: want head or layer", per)
	}
	final, err := c.m.T.ResidualSite(c.m.T.NLayers())
	if err != nil {
		return nil, err
	}
	resid, err := c.Get(final)
	if err != nil {
		return nil, err
	}
	d := &Decomposition{Resid: resid}
	var parts []*hooks.Tensor // each [B,T,D]
	push := func(label string, t *hooks.Tensor) {
		d.Labels = append(d.Labels, label)
		parts = append(parts, t)
	}
	if err := c.embeddings(push); err != nil {
		return nil, err
	}
	var bias [][]float32
	if per == PerHead {
		if bias, err = c.m.AttnBias(ctx); err != nil {
			return nil, err
		}
	}
	for l := 0; l < c.m.T.NLayers(); l++ {
		if err := c.layerParts(l, per, bias, push); err != nil {
			return nil, err
		}
	}
	d.Components = hooks.Zeros(append([]int{len(parts)}, resid.Shape...)...)
	n := resid.Numel()
	for i, p := range parts {
		copy(d.Components.Data[i*n:(i+1)*n], p.Data)
	}
	return d, d.check()
}

// embeddings adds the token embedding and the position embedding (when
// the model has one). A model whose embedding weights cannot be read gets
// one component, embed, the whole of resid.post_emb.
func (c *Cache) embeddings(push func(string, *hooks.Tensor)) error {
	post, err := c.Get(hooks.Site{Point: hooks.ResidPostEmb, Layer: -1})
	if err != nil {
		return err
	}
	we, err := c.m.optionalWeight(modelctx.WeightEmbedding, modelctx.NoLayer) // [V,D]
	if err != nil {
		return err
	}
	if we == nil {
		// No readable embedding weights (an imported graph): the embedding
		// stage's output is the one component before the layers.
		push("embed", post)
		return nil
	}
	B, T, D := post.Shape[0], post.Shape[1], post.Shape[2]
	embed := hooks.Zeros(B, T, D)
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			id := 0 // pads are token 0, as the model sees them
			if t < len(c.Tokens[b]) {
				id = c.Tokens[b][t]
			}
			copy(embed.Data[(b*T+t)*D:(b*T+t+1)*D], we.Data[id*D:(id+1)*D])
		}
	}
	push("embed", embed)
	wp, err := c.m.optionalWeight(modelctx.WeightPositionEmbedding, modelctx.NoLayer) // [ctx,D]
	if err != nil || wp == nil {
		return err
	}
	pos := hooks.Zeros(B, T, D)
	for b := 0; b < B; b++ {
		copy(pos.Data[b*T*D:(b+1)*T*D], wp.Data[:T*D])
	}
	push("pos_embed", pos)
	return nil
}

// layerParts adds one layer's attention components and its MLP output.
func (c *Cache) layerParts(l int, per Per, bias [][]float32, push func(string, *hooks.Tensor)) error {
	if per == PerLayer {
		a, err := c.Get(hooks.Site{Point: hooks.DeltaAttn, Layer: l})
		if err != nil {
			return err
		}
		push(fmt.Sprintf("L%d.attn", l), a)
	} else {
		heads, err := c.HeadResults(l) // [B,T,H,D]
		if err != nil {
			return err
		}
		B, T, H, D := heads.Shape[0], heads.Shape[1], heads.Shape[2], heads.Shape[3]
		for h := 0; h < H; h++ {
			one := hooks.Zeros(B, T, D)
			for bt := 0; bt < B*T; bt++ {
				copy(one.Data[bt*D:(bt+1)*D], heads.Data[(bt*H+h)*D:(bt*H+h+1)*D])
			}
			push(fmt.Sprintf("L%dH%d", l, h), one)
		}
		b := hooks.Zeros(B, T, D)
		for bt := 0; bt < B*T; bt++ {
			copy(b.Data[bt*D:(bt+1)*D], bias[l])
		}
		push(fmt.Sprintf("L%d.attn_bias", l), b)
	}
	m, err := c.Get(hooks.Site{Point: hooks.DeltaMLP, Layer: l})
	if err != nil {
		return err
	}
	push(fmt.Sprintf("L%d.mlp", l), m)
	return nil
}

// check sums the components and compares them with the residual.
func (d *Decomposition) check() error {
	n := d.Resid.Numel()
	var maxAbs float64
	for i, r := range d.Resid.Data {
		sum := 0.0
		for k := range d.Labels {
			sum += float64(d.Components.Data[k*n+i])
		}
		d.MaxError = math.Max(d.MaxError, math.Abs(sum-float64(r)))
		maxAbs = math.Max(maxAbs, math.Abs(float64(r)))
	}
	if d.MaxError > SumTolerance*maxAbs {
		return fmt.Errorf("%w: off by %.3g, allowed %.3g (%g x max|resid| %.3g)", ErrDecomposition, d.MaxError, SumTolerance*maxAbs, SumTolerance, maxAbs)
	}
	return nil
}
