package llama

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Tensor names the stages share beyond the engine's own (graphs.InTokens,
// graphs.PastK, ...).
const (
	AttnMask = "attn_mask" // bool [B,T,Tk,1]: true where attention is masked
	RopeCos  = "rope_cos"  // float [B,T,1,d_head]: cos of each position's rotary angles
	RopeSin  = "rope_sin"  // float [B,T,1,d_head]
)

// PointTensor names the tensor of a hook point at a layer (-1 for once points).
func PointTensor(p hooks.Point, layer int) string { return graphs.PointTensor(p, layer) }

// MLPUp is the hook point of the up_proj output, [B,T,d_ff], a value with
// no point of the original: mlp.post_act is silu(mlp.pre_act) times it. It
// is called right after mlp.pre_act.
var MLPUp = mustRegister(hooks.PointSpec{
	Path: "mlp.up", PerLayer: true, Shape: []hooks.Dim{hooks.Batch, hooks.Seq, hooks.FF}, After: hooks.MLPPreAct,
})

func mustRegister(spec hooks.PointSpec) hooks.Point {
	p, err := hooks.RegisterPoint(spec)
	if err != nil {
		panic(err) // a clash between plugins' point names is a build mistake
	}
	return p
}

// stage builds one stage graph.
type stage struct {
	c Config
	w graphs.Weights
	b *graphs.Builder
}

func newStage(c Config, w graphs.Weights, name, prefix string) *stage {
	s := &stage{c: c, w: w, b: graphs.NewBuilder(name)}
	s.b.SetPrefix(prefix)
	return s
}

func (s *stage) weight(name string, dims ...int64) string {
	ref, err := s.w.Ref(s.b, name, dims...)
	if err != nil {
		panic(err) // recovered by Stages
	}
	return ref
}

// StageNames are the file stems of Stages' graphs.
func StageNames(c Config) []string {
	names := []string{"embed"}
	for l := 0; l < c.NLayers; l++ {
		names = append(names, fmt.Sprintf("layer%d", l))
	}
	return append(names, "final")
}

// Stages builds the stage graphs: embed, one per layer, final. Stages are
// linked by tensor name, so graphs.Merge joins them into the whole model.
func Stages(c Config, w graphs.Weights) (stages []*onnxpb.ModelProto, err error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("build llama graphs: %v", r)
		}
	}()
	stages = append(stages, embedStage(c, w))
	for l := 0; l < c.NLayers; l++ {
		stages = append(stages, layerStage(c, w, l))
	}
	return append(stages, finalStage(c, w)), nil
}

// embedStage looks up the token embeddings and computes what every layer
// shares: the attention mask and the rotary cos/sin tables at each token's
// position.
func embedStage(c Config, w graphs.Weights) *onnxpb.ModelProto {
	s := newStage(c, w, "embed", "embed/")
	b := s.b
	tokens := b.Input(graphs.InTokens, graphs.Int64, "B", "T")
	pad := b.Input(graphs.InPad, graphs.Bool, "B", "Tk")
	prev := b.Input(graphs.InPrevLens, graphs.Int64, "B", "1")
	axis := func(a int64) string { return b.ConstI64("", []int64{1}, a) }
	one, zero := b.ConstI64("", []int64{1}, 1), b.ConstI64("", []int64{1}, 0)
	oneS, zeroS := b.ConstI64("", nil, 1), b.ConstI64("", nil, 0)

	// Query i is key Tk-T+i.
	t1 := b.Op("Shape", "", []string{tokens}, graphs.AttrInt("start", 1), graphs.AttrInt("end", 2))
	tk1 := b.Op("Shape", "", []string{pad}, graphs.AttrInt("start", 1), graphs.AttrInt("end", 2))
	tS := b.Op("Squeeze", "", []string{t1, axis(0)})
	tkS := b.Op("Squeeze", "", []string{tk1, axis(0)})
	qidx := b.Op("Range", "", []string{b.Op("Sub", "", []string{tkS, tS}), tkS, oneS})

	// The pad flags of this call's tokens are the last T of pad: a Gather,
	// not a Slice, which ONNX Runtime's plugin CUDA provider crashes in.
	padNew := b.Type(b.Op("Gather", "", []string{pad, qidx}, graphs.AttrInt("axis", 1)), graphs.Bool, "B", "T")

	// Positions: cumsum(!pad)-1 clamped at 0, plus the real tokens cached.
	real := b.Op("Cast", "", []string{b.Op("Not", "", []string{padNew})}, graphs.AttrInt("to", int64(graphs.Int64)))
	cs := b.Op("CumSum", "", []string{real, oneS})
	pos := b.Op("Add", "embed/positions", []string{b.Op("Max", "", []string{b.Op("Sub", "", []string{cs, one}), zero}), prev})
	b.Type(pos, graphs.Int64, "B", "T")

	emb := b.Op("Gather", PointTensor(hooks.ResidPostEmb, -1), []string{
		s.weight("embed_tokens.weight", int64(c.NVocab), int64(c.DModel)), tokens}, graphs.AttrInt("axis", 0))
	b.Output(emb, graphs.Float, "B", "T", fmt.Sprint(c.DModel))

	// Rotary angles: position times each inverse frequency, the half-width
	// table repeated for both halves of the head (rotate-half pairs i and
	// i+d_head/2 share a frequency).
	inv := c.InvFreq()
	posF := b.Op("Unsqueeze", "", []string{b.Op("Cast", "", []string{pos}, graphs.AttrInt("to", int64(graphs.Float))), axis(2)})
	freqs := b.Op("Mul", "", []string{posF, b.ConstF32("embed/inv_freq", []int64{int64(len(inv))}, inv...)})
	ang := b.Op("Concat", "", []string{freqs, freqs}, graphs.AttrInt("axis", -1))
	dh := fmt.Sprint(c.DHead)
	b.Output(b.Op("Unsqueeze", RopeCos, []string{b.Op("Cos", "", []string{ang}), axis(2)}), graphs.Float, "B", "T", "1", dh)
	b.Output(b.Op("Unsqueeze", RopeSin, []string{b.Op("Sin", "", []string{ang}), axis(2)}), graphs.Float, "B", "T", "1", dh)

	// Attention mask, true where masked: causal over the key axis plus the
	// pad XOR (a real query never reads a pad; a pad query reads only pads,
	// so no row of the softmax is all -inf).
	kidx := b.Op("Range", "", []string{zeroS, tkS, oneS})
	causal := b.Op("Greater", "", []string{
		b.Op("Unsqueeze", "", []string{kidx, axis(0)}),
		b.Op("Unsqueeze", "", []string{qidx, axis(1)}),
	})
	pm := b.Op("Xor", "", []string{
		b.Op("Unsqueeze", "", []string{padNew, axis(2)}),
		b.Op("Unsqueeze", "", []string{pad, axis(1)}),
	})
	mask := b.Op("Unsqueeze", AttnMask, []string{b.Op("Or", "", []string{causal, pm}), axis(3)})
	b.Output(mask, graphs.Bool, "B", "T", "Tk", "1")
	return b.Model()
}

// layerInput is the residual stream entering layer l.
func layerInput(l int) string {
	if l == 0 {
		return PointTensor(hooks.ResidPostEmb, -1)
	}
	return PointTensor(hooks.PostMLP, l-1)
}

// rmsNorm is weight * x / sqrt(mean(x^2) + eps), with the scale and
// post_scale hook points, and returns the output tensor.
func (s *stage) rmsNorm(x, weight string, pts hooks.LayerNormPoints, out string, layer int) string {
	b := s.b
	D := fmt.Sprint(s.c.DModel)
	ms := b.Op("ReduceMean", "", []string{b.Op("Mul", "", []string{x, x})},
		graphs.AttrInts("axes", -1), graphs.AttrInt("keepdims", 1))
	eps := b.ConstF32("", nil, float32(s.c.RMSEps))
	scale := b.Type(b.Op("Sqrt", PointTensor(pts.Scale, layer), []string{b.Op("Add", "", []string{ms, eps})}), graphs.Float, "B", "T", "1")
	y := b.Type(b.Op("Div", PointTensor(pts.PostScale, layer), []string{x, scale}), graphs.Float, "B", "T", D)
	return b.Type(b.Op("Mul", out, []string{y, weight}), graphs.Float, "B", "T", D)
}

// rotateHalfMatrix is R with x R = rotate_half(x) = concat(-x2, x1) for x =
// concat(x1, x2) along a head's d_head channels. A product with a constant
// of zeros and ones is exact, and needs no Slice.
func rotateHalfMatrix(dh int) []float32 {
	r := make([]float32, dh*dh)
	half := dh / 2
	for j := 0; j < half; j++ {
		r[(j+half)*dh+j] = -1 // out[j] = -x[j+half]
		r[j*dh+j+half] = 1    // out[j+half] = x[j]
	}
	return r
}

// rope rotates x [B,T,heads,d_head]: x cos + rotate_half(x) sin.
func (s *stage) rope(x, cos, sin, rot string) string {
	b := s.b
	return b.Op("Add", "", []string{
		b.Op("Mul", "", []string{x, cos}),
		b.Op("Mul", "", []string{b.Op("MatMul", "", []string{x, rot}), sin}),
	})
}

// repeatKV gives each query head its key-value head: [B,Tk,KV,dh] to
// [B,Tk,H,dh], query head h reading kv head h / (H/KV).
func (s *stage) repeatKV(x string) string {
	c, b := s.c, s.b
	g := int64(c.NHeads / c.NKVHeads)
	if g == 1 {
		return x
	}
	x5 := b.Op("Unsqueeze", "", []string{x, b.ConstI64("", []int64{1}, 3)})
	wide := b.Op("Expand", "", []string{x5, b.ConstI64("", []int64{5}, 1, 1, 1, g, 1)})
	return b.Op("Reshape", "", []string{wide, b.ConstI64("", []int64{4}, 0, 0, int64(c.NHeads), int64(c.DHead))})
}
