package llama

import (
	"fmt"
	"math"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// layerStage is one decoder block: RMSNorm, attention with the rotary
// embedding and a KV cache, residual add, RMSNorm, SwiGLU MLP, residual add.
func layerStage(c Config, w graphs.Weights, l int) *onnxpb.ModelProto {
	s := newStage(c, w, fmt.Sprintf("layer%d", l), fmt.Sprintf("L%d/", l))
	b := s.b
	D, KVW, F := int64(c.DModel), int64(c.KVWidth()), int64(c.DFF)
	Ds, Fs := fmt.Sprint(D), fmt.Sprint(F)
	p := fmt.Sprintf("layers.%d.", l)
	pt := func(pp hooks.Point) string { return PointTensor(pp, l) }

	x := b.Input(layerInput(l), graphs.Float, "B", "T", Ds)
	mask := b.Input(AttnMask, graphs.Bool, "B", "T", "Tk", "1")
	dh := fmt.Sprint(c.DHead)
	cos := b.Input(RopeCos, graphs.Float, "B", "T", "1", dh)
	sin := b.Input(RopeSin, graphs.Float, "B", "T", "1", dh)
	pastK := b.Input(graphs.PastK(l), graphs.Float, "B", "P", fmt.Sprint(KVW))
	pastV := b.Input(graphs.PastV(l), graphs.Float, "B", "P", fmt.Sprint(KVW))

	h := s.rmsNorm(x, s.weight(p+"input_layernorm.weight", D), hooks.Resid.Torso.LnAttn, pt(hooks.PostLnAttn), l)
	postAttn := s.attention(h, x, mask, cos, sin, pastK, pastV, l)

	h2 := s.rmsNorm(postAttn, s.weight(p+"post_attention_layernorm.weight", D), hooks.Resid.Torso.LnMLP, pt(hooks.PostLnMLP), l)
	gate := b.Type(b.Op("MatMul", pt(hooks.MLPPreAct), []string{h2, s.weight(p+"gate_proj.weight.T", D, F)}), graphs.Float, "B", "T", Fs)
	up := b.Type(b.Op("MatMul", pt(MLPUp), []string{h2, s.weight(p+"up_proj.weight.T", D, F)}), graphs.Float, "B", "T", Fs)
	silu := b.Op("Mul", "", []string{gate, b.Op("Sigmoid", "", []string{gate})})
	post := b.Type(b.Op("Mul", pt(hooks.MLPPostAct), []string{silu, up}), graphs.Float, "B", "T", Fs)
	dMLP := b.Type(b.Op("MatMul", pt(hooks.DeltaMLP), []string{post, s.weight(p+"down_proj.weight.T", F, D)}), graphs.Float, "B", "T", Ds)
	out := b.Op("Add", pt(hooks.PostMLP), []string{postAttn, dMLP})
	b.Output(out, graphs.Float, "B", "T", Ds)
	return b.Model()
}

// attention adds the attention block on the normed input h and returns the
// residual stream after it (x plus the attention delta).
func (s *stage) attention(h, x, mask, cos, sin, pastK, pastV string, l int) string {
	c, b := s.c, s.b
	D, Q, KVW := int64(c.DModel), int64(c.QWidth()), int64(c.KVWidth())
	H, KV, dh := int64(c.NHeads), int64(c.NKVHeads), int64(c.DHead)
	Ds, Hs, KVs, dhs := fmt.Sprint(D), fmt.Sprint(H), fmt.Sprint(KV), fmt.Sprint(dh)
	p := fmt.Sprintf("layers.%d.", l)
	pt := func(pp hooks.Point) string { return PointTensor(pp, l) }
	split := func(heads int64) string { return b.ConstI64("", []int64{4}, 0, 0, heads, dh) }

	rot := b.ConstF32("", []int64{dh, dh}, rotateHalfMatrix(c.DHead)...)
	q := b.Op("Reshape", "", []string{b.Op("MatMul", "", []string{h, s.weight(p+"q_proj.weight.T", D, Q)}), split(H)})
	kNew := b.Op("Reshape", "", []string{b.Op("MatMul", "", []string{h, s.weight(p+"k_proj.weight.T", D, KVW)}), split(KV)})
	vNew := b.Op("MatMul", "", []string{h, s.weight(p+"v_proj.weight.T", D, KVW)})
	qr := s.rope(q, cos, sin, rot)
	kr := b.Op("Reshape", "", []string{s.rope(kNew, cos, sin, rot), b.ConstI64("", []int64{3}, 0, 0, KVW)})

	kAll := b.Op("Concat", graphs.PresentK(l), []string{pastK, kr}, graphs.AttrInt("axis", 1))
	vAll := b.Op("Concat", graphs.PresentV(l), []string{pastV, vNew}, graphs.AttrInt("axis", 1))
	b.Output(kAll, graphs.Float, "B", "Tk", fmt.Sprint(KVW))
	b.Output(vAll, graphs.Float, "B", "Tk", fmt.Sprint(KVW))

	// q and k each scaled by d_head^-1/4, so that q.k is the attention logit.
	scale := b.ConstF32("", nil, float32(1/math.Sqrt(math.Sqrt(float64(dh)))))
	qh := b.Type(b.Op("Mul", pt(hooks.AttnQ), []string{qr, scale}), graphs.Float, "B", "T", Hs, dhs)
	kh := b.Type(b.Op("Mul", pt(hooks.AttnK), []string{b.Op("Reshape", "", []string{kAll, split(KV)}), scale}), graphs.Float, "B", "Tk", KVs, dhs)
	vh := b.Type(b.Op("Reshape", pt(hooks.AttnV), []string{vAll, split(KV)}), graphs.Float, "B", "Tk", KVs, dhs)

	// S = q.k in [B,H,T,Tk], laid out [B,T,Tk,H] at the hook, -inf where masked.
	qt := b.Op("Transpose", "", []string{qh}, graphs.AttrInts("perm", 0, 2, 1, 3))
	kt := b.Op("Transpose", "", []string{s.repeatKV(kh)}, graphs.AttrInts("perm", 0, 2, 3, 1))
	sc := b.Op("Transpose", "", []string{b.Op("MatMul", "", []string{qt, kt})}, graphs.AttrInts("perm", 0, 2, 3, 1))
	ninf := b.ConstF32("", nil, graphs.NegInf)
	logits := b.Type(b.Op("Where", pt(hooks.AttnQKLogits), []string{mask, ninf, sc}), graphs.Float, "B", "T", "Tk", Hs)

	lt := b.Op("Transpose", "", []string{logits}, graphs.AttrInts("perm", 0, 3, 1, 2))
	probsBH := b.Op("Softmax", "", []string{lt}, graphs.AttrInt("axis", -1))
	probs := b.Type(b.Op("Transpose", pt(hooks.AttnQKProbs), []string{probsBH}, graphs.AttrInts("perm", 0, 2, 3, 1)), graphs.Float, "B", "T", "Tk", Hs)
	export.SoftmaxPaths(b, lt, probsBH, l, Hs) // the explicit softmax and the read-only denominator

	// Weighted sum of values, [B,T,H,dh] at the hook.
	pbh := b.Op("Transpose", "", []string{probs}, graphs.AttrInts("perm", 0, 3, 1, 2))
	vt := b.Op("Transpose", "", []string{s.repeatKV(vh)}, graphs.AttrInts("perm", 0, 2, 1, 3))
	vout := b.Type(b.Op("Transpose", pt(hooks.AttnVOut), []string{b.Op("MatMul", "", []string{pbh, vt})}, graphs.AttrInts("perm", 0, 2, 1, 3)), graphs.Float, "B", "T", Hs, dhs)
	merged := b.Op("Reshape", "", []string{vout, b.ConstI64("", []int64{3}, 0, 0, Q)})
	dAttn := b.Type(b.Op("MatMul", pt(hooks.DeltaAttn), []string{merged, s.weight(p+"o_proj.weight.T", Q, D)}), graphs.Float, "B", "T", Ds)
	return b.Type(b.Op("Add", pt(hooks.PostAttn), []string{x, dAttn}), graphs.Float, "B", "T", Ds)
}

// finalStage is the final RMSNorm and the unembedding.
func finalStage(c Config, w graphs.Weights) *onnxpb.ModelProto {
	s := newStage(c, w, "final", "final/")
	b := s.b
	D, V := int64(c.DModel), int64(c.NVocab)
	x := b.Input(PointTensor(hooks.PostMLP, c.NLayers-1), graphs.Float, "B", "T", fmt.Sprint(D))
	h := s.rmsNorm(x, s.weight("norm.weight", D), hooks.Resid.LnF, PointTensor(hooks.PostLnF, -1), -1)
	logits := b.Op("MatMul", graphs.OutLogits, []string{h, s.weight("lm_head.weight.T", D, V)})
	b.Output(logits, graphs.Float, "B", "T", fmt.Sprint(V))
	return b.Model()
}

// Points maps every hook site the model has to its tensor: TDB's points
// but the LayerNorms' post_mean_subtraction (an RMSNorm subtracts no mean),
// and mlp.up, the up_proj output.
func Points(c Config) map[hooks.Site]string {
	skip := map[hooks.Point]bool{
		hooks.LnAttnPostMeanSubtraction: true,
		hooks.LnMLPPostMeanSubtraction:  true,
		hooks.LnFPostMeanSubtraction:    true,
	}
	m := map[hooks.Site]string{}
	for _, p := range append(hooks.TDBPoints(), MLPUp) {
		if skip[p] {
			continue
		}
		if !p.PerLayer() {
			m[hooks.Site{Point: p, Layer: -1}] = PointTensor(p, -1)
			continue
		}
		for l := 0; l < c.NLayers; l++ {
			m[hooks.Site{Point: p, Layer: l}] = PointTensor(p, l)
		}
	}
	return m
}

// Switches lists the softmax switch of every layer (export.SoftmaxSwitches).
func Switches(c Config) []graphs.Switch { return export.SoftmaxSwitches(c.NLayers) }
