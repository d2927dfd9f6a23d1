package gpt2

import (
	"fmt"
	"math"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// attnMask is the bool [B,T,Tk,1] mask tensor (true where attention is
// masked) the embedding stage hands to every layer.
const attnMask = "attn_mask"

// WeightSpec is one initializer of the GPT-2 graphs and where its values come
// from in the TDB state dict.
type WeightSpec struct {
	Name      string  // initializer name in the graphs
	Source    string  // state-dict key
	Transpose bool    // stored as the transpose of the [out,in] piece, ready for MatMul
	Dims      []int64 // dims as stored
}

// WeightSpecs lists the initializers the GPT-2 stage graphs read.
func WeightSpecs(c Config) []WeightSpec {
	D, F, V := int64(c.DModel), int64(c.DFF), int64(c.NVocab)
	ws := []WeightSpec{
		{"tok_embed.weight", "tok_embed.weight", false, []int64{V, D}},
		{"pos_embed.weight", "pos_embed.weight", false, []int64{int64(c.NCtx), D}},
	}
	for l := 0; l < c.NLayers; l++ {
		p := fmt.Sprintf("xf_layers.%d.", l)
		ws = append(ws,
			WeightSpec{p + "ln_1.weight", p + "ln_1.weight", false, []int64{D}},
			WeightSpec{p + "ln_1.bias", p + "ln_1.bias", false, []int64{D}},
			WeightSpec{p + "attn.q_proj.weight.T", p + "attn.q_proj.weight", true, []int64{D, D}},
			WeightSpec{p + "attn.q_proj.bias", p + "attn.q_proj.bias", false, []int64{D}},
			WeightSpec{p + "attn.k_proj.weight.T", p + "attn.k_proj.weight", true, []int64{D, D}},
			WeightSpec{p + "attn.k_proj.bias", p + "attn.k_proj.bias", false, []int64{D}},
			WeightSpec{p + "attn.v_proj.weight.T", p + "attn.v_proj.weight", true, []int64{D, D}},
			WeightSpec{p + "attn.v_proj.bias", p + "attn.v_proj.bias", false, []int64{D}},
			WeightSpec{p + "attn.out_proj.weight.T", p + "attn.out_proj.weight", true, []int64{D, D}},
			WeightSpec{p + "attn.out_proj.bias", p + "attn.out_proj.bias", false, []int64{D}},
			WeightSpec{p + "ln_2.weight", p + "ln_2.weight", false, []int64{D}},
			WeightSpec{p + "ln_2.bias", p + "ln_2.bias", false, []int64{D}},
			WeightSpec{p + "mlp.in_layer.weight.T", p + "mlp.in_layer.weight", true, []int64{D, F}},
			WeightSpec{p + "mlp.in_layer.bias", p + "mlp.in_layer.bias", false, []int64{F}},
			WeightSpec{p + "mlp.out_layer.weight.T", p + "mlp.out_layer.weight", true, []int64{F, D}},
			WeightSpec{p + "mlp.out_layer.bias", p + "mlp.out_layer.bias", false, []int64{D}},
		)
	}
	ws = append(ws,
		WeightSpec{"final_ln.weight", "final_ln.weight", false, []int64{D}},
		WeightSpec{"final_ln.bias", "final_ln.bias", false, []int64{D}},
		WeightSpec{"unembed.weight.T", "unembed.weight", true, []int64{D, V}},
	)
	return ws
}

// stage builds one stage at a time.
type stage struct {
	c Config
	w graphs.Weights
	b *graphs.Builder
}

func (g *stage) weight(name string, dims ...int64) string {
	off, ok := g.w.Offsets[name]
	if !ok {
		panic(fmt.Sprintf("graphs: weight %s missing from the weights table", name))
	}
	return g.b.External(name, dims, g.w.Location, off[0], off[1])
}

// Stages builds the stage graphs: embed, one per layer, final. Stages are
// linked by tensor name: a stage's input is the earlier stage's output of the
// same name, so graphs.Merge joins them into the whole model.
func Stages(c Config, w graphs.Weights) (stages []*onnxpb.ModelProto, err error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("build gpt2 graphs: %v", r)
		}
	}()
	stages = append(stages, embedStage(c, w))
	for l := 0; l < c.NLayers; l++ {
		stages = append(stages, layerStage(c, w, l))
	}
	stages = append(stages, finalStage(c, w))
	return stages, nil
}

// StageNames are the file stems of Stages' graphs.
func StageNames(c Config) []string {
	names := []string{"embed"}
	for l := 0; l < c.NLayers; l++ {
		names = append(names, fmt.Sprintf("layer%d", l))
	}
	return append(names, "final")
}

func embedStage(c Config, w graphs.Weights) *onnxpb.ModelProto {
	g := &stage{c: c, w: w, b: graphs.NewBuilder("embed")}
	b := g.b
	b.SetPrefix("embed/")
	D := fmt.Sprint(c.DModel)
	tokens := b.Input(graphs.InTokens, graphs.Int64, "B", "T")
	pad := b.Input(graphs.InPad, graphs.Bool, "B", "Tk")
	prev := b.Input(graphs.InPrevLens, graphs.Int64, "B", "1")

	one := b.ConstI64("embed/one", []int64{1}, 1)
	zero := b.ConstI64("embed/zero", []int64{1}, 0)
	oneS := b.ConstI64("embed/one_s", nil, 1)
	zeroS := b.ConstI64("embed/zero_s", nil, 0)

	// Query i is key Tk-T+i: qidx = Tk-T .. Tk-1.
	t1 := b.Op("Shape", "embed/T", []string{tokens}, graphs.AttrInt("start", 1), graphs.AttrInt("end", 2))
	tk1 := b.Op("Shape", "embed/Tk", []string{pad}, graphs.AttrInt("start", 1), graphs.AttrInt("end", 2))
	axis0 := b.ConstI64("embed/axis0", []int64{1}, 0)
	tkS := b.Op("Squeeze", "", []string{tk1, axis0})
	tS := b.Op("Squeeze", "", []string{t1, axis0})
	qidx := b.Op("Range", "", []string{b.Op("Sub", "", []string{tkS, tS}), tkS, oneS})

	// The pad flags of this call's tokens: the last T entries of pad. A
	// Gather, not a Slice: ONNX Runtime 1.29's plugin CUDA provider crashes
	// in Slice.
	padNew := b.Type(b.Op("Gather", "embed/pad_new", []string{pad, qidx}, graphs.AttrInt("axis", 1)), graphs.Bool, "B", "T")

	// Positions (docs/behaviour.md §1.4): cumsum(!pad) - 1, clamped at 0, plus the real
	// length already in the cache.
	real := b.Op("Cast", "", []string{b.Op("Not", "", []string{padNew})}, graphs.AttrInt("to", int64(graphs.Int64)))
	cs := b.Op("CumSum", "", []string{real, oneS})
	pos := b.Op("Add", "embed/positions", []string{b.Op("Max", "", []string{b.Op("Sub", "", []string{cs, one}), zero}), prev})
	b.Type(pos, graphs.Int64, "B", "T")

	tok := b.Op("Gather", "", []string{g.weight("tok_embed.weight", int64(c.NVocab), int64(c.DModel)), tokens}, graphs.AttrInt("axis", 0))
	pe := b.Op("Gather", "", []string{g.weight("pos_embed.weight", int64(c.NCtx), int64(c.DModel)), pos}, graphs.AttrInt("axis", 0))
	emb := b.Op("Add", graphs.PointTensor(hooks.ResidPostEmb, -1), []string{tok, pe})
	b.Output(emb, graphs.Float, "B", "T", D)

	// Attention mask, true where masked: causal over the key axis (query i is
	// key Tk-T+i) plus the pad XOR mask of docs/behaviour.md §1.3 step 6.
	kidx := b.Op("Range", "", []string{zeroS, tkS, oneS})
	axis1 := b.ConstI64("embed/axis1", []int64{1}, 1)
	axis2 := b.ConstI64("embed/axis2", []int64{1}, 2)
	axis3 := b.ConstI64("embed/axis3", []int64{1}, 3)
	causal := b.Op("Greater", "embed/causal", []string{
		b.Op("Unsqueeze", "", []string{kidx, axis0}),
		b.Op("Unsqueeze", "", []string{qidx, axis1}),
	})
	pm := b.Op("Xor", "", []string{
		b.Op("Unsqueeze", "", []string{padNew, axis2}),
		b.Op("Unsqueeze", "", []string{pad, axis1}),
	})
	mask := b.Op("Unsqueeze", attnMask, []string{b.Op("Or", "", []string{causal, pm}), axis3})
	b.Output(mask, graphs.Bool, "B", "T", "Tk", "1")
	return b.Model()
}

// layerInput is the residual stream entering layer l.
func layerInput(l int) string {
	if l == 0 {
		return graphs.PointTensor(hooks.ResidPostEmb, -1)
	}
	return graphs.PointTensor(hooks.PostMLP, l-1)
}

// layerNorm adds the original's LayerNorm with its three inner hook points
// and returns the output tensor (docs/behaviour.md §1.3 Norm).
func (g *stage) layerNorm(x, gain, bias string, pts hooks.LayerNormPoints, out string, layer int) string {
	b := g.b
	D := fmt.Sprint(g.c.DModel)
	ax := []*onnxpb.AttributeProto{graphs.AttrInts("axes", -1), graphs.AttrInt("keepdims", 1)}
	mean := b.Op("ReduceMean", "", []string{x}, ax...)
	xc := b.Type(b.Op("Sub", graphs.PointTensor(pts.PostMeanSubtraction, layer), []string{x, mean}), graphs.Float, "B", "T", D)
	two := b.ConstF32("", nil, 2)
	eps := b.ConstF32("", nil, 1e-5)
	v := b.Op("ReduceMean", "", []string{b.Op("Pow", "", []string{xc, two})}, ax...)
	s := b.Type(b.Op("Sqrt", graphs.PointTensor(pts.Scale, layer), []string{b.Op("Add", "", []string{v, eps})}), graphs.Float, "B", "T", "1")
	y := b.Type(b.Op("Div", graphs.PointTensor(pts.PostScale, layer), []string{xc, s}), graphs.Float, "B", "T", D)
	return b.Type(b.Op("Add", out, []string{b.Op("Mul", "", []string{y, gain}), bias}), graphs.Float, "B", "T", D)
}

// linear is x W + b with W stored [in,out].
func (g *stage) linear(x, w, bias, out string) string {
	b := g.b
	y := b.Op("MatMul", "", []string{x, w})
	if bias == "" {
		return b.Op("Identity", out, []string{y})
	}
	return b.Op("Add", out, []string{y, bias})
}

func layerStage(c Config, w graphs.Weights, l int) *onnxpb.ModelProto {
	g := &stage{c: c, w: w, b: graphs.NewBuilder(fmt.Sprintf("layer%d", l))}
	b := g.b
	b.SetPrefix(fmt.Sprintf("L%d/", l))
	D, H, dh, F := int64(c.DModel), int64(c.NHeads), int64(c.DHead), int64(c.DFF)
	Ds, Hs, dhs, Fs := fmt.Sprint(D), fmt.Sprint(H), fmt.Sprint(dh), fmt.Sprint(F)
	p := fmt.Sprintf("xf_layers.%d.", l)
	pt := func(pp hooks.Point) string { return graphs.PointTensor(pp, l) }

	x := b.Input(layerInput(l), graphs.Float, "B", "T", Ds)
	mask := b.Input(attnMask, graphs.Bool, "B", "T", "Tk", "1")
	pastK := b.Input(graphs.PastK(l), graphs.Float, "B", "P", Ds)
	pastV := b.Input(graphs.PastV(l), graphs.Float, "B", "P", Ds)

	// Attention block.
	h := g.layerNorm(x, g.weight(p+"ln_1.weight", D), g.weight(p+"ln_1.bias", D),
		hooks.Resid.Torso.LnAttn, pt(hooks.PostLnAttn), l)
	q := g.linear(h, g.weight(p+"attn.q_proj.weight.T", D, D), g.weight(p+"attn.q_proj.bias", D), "")
	kNew := g.linear(h, g.weight(p+"attn.k_proj.weight.T", D, D), g.weight(p+"attn.k_proj.bias", D), "")
	vNew := g.linear(h, g.weight(p+"attn.v_proj.weight.T", D, D), g.weight(p+"attn.v_proj.bias", D), "")
	kAll := b.Op("Concat", graphs.PresentK(l), []string{pastK, kNew}, graphs.AttrInt("axis", 1))
	vAll := b.Op("Concat", graphs.PresentV(l), []string{pastV, vNew}, graphs.AttrInt("axis", 1))
	b.Output(kAll, graphs.Float, "B", "Tk", Ds)
	b.Output(vAll, graphs.Float, "B", "Tk", Ds)

	split := b.ConstI64("", []int64{4}, 0, 0, H, dh)
	scale := b.ConstF32("", nil, float32(1/math.Sqrt(math.Sqrt(float64(dh)))))
	qh := b.Type(b.Op("Mul", pt(hooks.AttnQ), []string{b.Op("Reshape", "", []string{q, split}), scale}), graphs.Float, "B", "T", Hs, dhs)
	kh := b.Type(b.Op("Mul", pt(hooks.AttnK), []string{b.Op("Reshape", "", []string{kAll, split}), scale}), graphs.Float, "B", "Tk", Hs, dhs)
	vh := b.Type(b.Op("Reshape", pt(hooks.AttnV), []string{vAll, split}), graphs.Float, "B", "Tk", Hs, dhs)

	// S = q.k in [B,H,T,Tk], laid out [B,T,Tk,H] at the hook, -inf where masked.
	qt := b.Op("Transpose", "", []string{qh}, graphs.AttrInts("perm", 0, 2, 1, 3))
	kt := b.Op("Transpose", "", []string{kh}, graphs.AttrInts("perm", 0, 2, 3, 1))
	s := b.Op("Transpose", "", []string{b.Op("MatMul", "", []string{qt, kt})}, graphs.AttrInts("perm", 0, 2, 3, 1))
	ninf := b.ConstF32("", nil, graphs.NegInf)
	logits := b.Type(b.Op("Where", pt(hooks.AttnQKLogits), []string{mask, ninf, s}), graphs.Float, "B", "T", "Tk", Hs)

	// Softmax over the key axis, in float32.
	lt := b.Op("Transpose", "", []string{logits}, graphs.AttrInts("perm", 0, 3, 1, 2))
	probsBH := b.Op("Softmax", "", []string{lt}, graphs.AttrInt("axis", -1))
	probs := b.Type(b.Op("Transpose", pt(hooks.AttnQKProbs), []string{probsBH}, graphs.AttrInts("perm", 0, 2, 3, 1)), graphs.Float, "B", "T", "Tk", Hs)

	// The explicit softmax and the read-only denominator (the switches).
	export.SoftmaxPaths(b, lt, probsBH, l, Hs)

	// Weighted sum of values, [B,T,H,dh] at the hook.
	pbh := b.Op("Transpose", "", []string{probs}, graphs.AttrInts("perm", 0, 3, 1, 2))
	vt := b.Op("Transpose", "", []string{vh}, graphs.AttrInts("perm", 0, 2, 1, 3))
	vout := b.Type(b.Op("Transpose", pt(hooks.AttnVOut), []string{b.Op("MatMul", "", []string{pbh, vt})}, graphs.AttrInts("perm", 0, 2, 1, 3)), graphs.Float, "B", "T", Hs, dhs)
	merge := b.ConstI64("", []int64{3}, 0, 0, D)
	merged := b.Op("Reshape", "", []string{vout, merge})
	dAttn := b.Type(g.linear(merged, g.weight(p+"attn.out_proj.weight.T", D, D), g.weight(p+"attn.out_proj.bias", D), pt(hooks.DeltaAttn)), graphs.Float, "B", "T", Ds)
	postAttn := b.Type(b.Op("Add", pt(hooks.PostAttn), []string{x, dAttn}), graphs.Float, "B", "T", Ds)

	// MLP block.
	h2 := g.layerNorm(postAttn, g.weight(p+"ln_2.weight", D), g.weight(p+"ln_2.bias", D),
		hooks.Resid.Torso.LnMLP, pt(hooks.PostLnMLP), l)
	pre := b.Type(g.linear(h2, g.weight(p+"mlp.in_layer.weight.T", D, F), g.weight(p+"mlp.in_layer.bias", F), pt(hooks.MLPPreAct)), graphs.Float, "B", "T", Fs)
	post := b.Type(g.gelu(pre, pt(hooks.MLPPostAct)), graphs.Float, "B", "T", Fs)
	dMLP := b.Type(g.linear(post, g.weight(p+"mlp.out_layer.weight.T", F, D), g.weight(p+"mlp.out_layer.bias", D), pt(hooks.DeltaMLP)), graphs.Float, "B", "T", Ds)
	out := b.Op("Add", pt(hooks.PostMLP), []string{postAttn, dMLP})
	b.Output(out, graphs.Float, "B", "T", Ds)
	return b.Model()
}

// gelu is the tanh approximation (docs/behaviour.md §1.3 MLP):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
func (g *stage) gelu(x, out string) string {
	b := g.b
	three := b.ConstF32("", nil, 3)
	k := b.ConstF32("", nil, 0.044715)
	c := b.ConstF32("", nil, float32(math.Sqrt(2/math.Pi)))
	half := b.ConstF32("", nil, 0.5)
	one := b.ConstF32("", nil, 1)
	inner := b.Op("Add", "", []string{x, b.Op("Mul", "", []string{k, b.Op("Pow", "", []string{x, three})})})
	t := b.Op("Tanh", "", []string{b.Op("Mul", "", []string{c, inner})})
	return b.Op("Mul", out, []string{b.Op("Mul", "", []string{half, x}), b.Op("Add", "", []string{one, t})})
}

func finalStage(c Config, w graphs.Weights) *onnxpb.ModelProto {
	g := &stage{c: c, w: w, b: graphs.NewBuilder("final")}
	b := g.b
	b.SetPrefix("final/")
	D, V := int64(c.DModel), int64(c.NVocab)
	x := b.Input(graphs.PointTensor(hooks.PostMLP, c.NLayers-1), graphs.Float, "B", "T", fmt.Sprint(D))
	h := g.layerNorm(x, g.weight("final_ln.weight", D), g.weight("final_ln.bias", D),
		hooks.Resid.LnF, graphs.PointTensor(hooks.PostLnF, -1), -1)
	logits := g.linear(h, g.weight("unembed.weight.T", D, V), "", graphs.OutLogits)
	b.Output(logits, graphs.Float, "B", "T", fmt.Sprint(V))
	return b.Model()
}

// Points maps every hook site of the model to its tensor.
func Points(c Config) map[hooks.Site]string {
	m := map[hooks.Site]string{}
	for _, p := range hooks.TDBPoints() {
		if !p.PerLayer() {
			m[hooks.Site{Point: p, Layer: -1}] = graphs.PointTensor(p, -1)
			continue
		}
		for l := 0; l < c.NLayers; l++ {
			m[hooks.Site{Point: p, Layer: l}] = graphs.PointTensor(p, l)
		}
	}
	return m
}

// Switches lists the softmax switch of every layer (export.SoftmaxSwitches).
func Switches(c Config) []graphs.Switch { return export.SoftmaxSwitches(c.NLayers) }
