package sae

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Tensor names of an SAE graph. The runtime cuts the graph by output: a run
// asking for latents runs only the encoder (and holds only its weights), one
// asking for reconstruction only the decoder.
const (
	inX         = "x"          // float [R, n]: inputs to encode
	inZ         = "z"          // float [R, N]: latents to decode
	inLatentIdx = "latent_idx" // int64 [S]: latents whose pre-activation is wanted
	outLatents  = "latents"    // float [R, N]
	outRecon    = "reconstruction"
	outPreAct   = "pre_act"             // float [R, S]: pre-activations of latent_idx
	inGradRec   = "grad_reconstruction" // float [R, n]: d(loss)/d(reconstruction)
	inGradLat   = "grad_latents"        // float [R, N]: d(loss)/d(latents)
	outVJPDec   = "vjp_decode"          // float [R, N]: grad_reconstruction · decoder
	outVJPEnc   = "vjp_encode"          // float [R, n]: (grad_latents ⊙ act'(x)) · encoder
	inXSkip     = "x_skip"              // float [R, n]: a skip-transcoder's raw input
	outSkip     = "skip"                // float [R, m]: x_skip · skipᵀ
	outVJPSkip  = "vjp_skip"            // float [R, n]: grad_reconstruction · skip
)

// weightRef is where an initializer's data is in the weights file.
type weightRef struct {
	Dims   []int64 `json:"dims"`
	DType  string  `json:"dtype"` // float32 or int64
	Offset int64   `json:"offset"`
	Length int64   `json:"length"`
}

// buildGraph builds the SAE as one ONNX graph over external weights:
//
//	xc             = x - pre_bias        (x itself with no_input_bias)
//	pre            = xc · encoderᵀ + latent_bias
//	latents        = act(pre)
//	reconstruction = z · decoderᵀ + pre_bias
//	pre_act        = xc · encoder[latent_idx]ᵀ + latent_bias[latent_idx]
//	vjp_decode     = grad_reconstruction · decoder
//	vjp_encode     = (grad_latents ⊙ act'(pre)) · encoder
//	skip           = x_skip · skipᵀ       (skip-transcoders)
//	vjp_skip       = grad_reconstruction · skip
//
// vjp_decode and vjp_encode are the vector-Jacobian products of decode and
// of encode at x (act' is 1 where a latent is active, 1 everywhere for
// Identity), for gradients through a splice. Input normalisation, when the
// SAE has one, is applied outside the graph (see norm.go).
//
// act is ReLU, Identity, TopK (the k largest pre-activations per row, ONNX
// TopK with ties to the lower index, postact_fn applied to them, scattered
// into zeros), JumpReLU (ReLU(pre) where pre > threshold) or Gated (pre is
// the gate: ReLU(xc · magᵀ + mag_bias) where pre > 0; its VJP goes through
// the magnitude path).
func buildGraph(m *folderManifest) (*onnxpb.ModelProto, error) {
	act, w := m.Activation, m.Tensors
	nOut := m.NOutputs
	if nOut == 0 {
		nOut = m.NInputs
	}
	n, N, M := fmt.Sprint(m.NInputs), fmt.Sprint(m.NLatents), fmt.Sprint(nOut)
	b := graphs.NewBuilder("sae")
	b.SetPrefix("sae/")
	b.Input(inX, graphs.Float, "R", n)
	b.Input(inZ, graphs.Float, "R", N)
	b.Input(inLatentIdx, graphs.Int64, "S")
	b.Input(inGradRec, graphs.Float, "R", M)
	b.Input(inGradLat, graphs.Float, "R", N)
	keys := []string{keyPreBias, keyEncoder, keyLatentBias, keyDecoder}
	switch act.Name {
	case JumpReLU:
		keys = append(keys, keyThreshold)
	case Gated:
		keys = append(keys, keyMagEncoder, keyMagBias)
	}
	_, skip := w[keySkip]
	if skip {
		keys = append(keys, keySkip)
		b.Input(inXSkip, graphs.Float, "R", n)
	}
	for _, key := range keys {
		ref, ok := w[key]
		if !ok {
			return nil, fmt.Errorf("sae graph: no weight %s", key)
		}
		b.External(key, ref.Dims, m.Weights, ref.Offset, ref.Length)
	}
	transB := graphs.AttrInt("transB", 1)

	xc := inX
	if !m.NoInputBias {
		xc = b.Type(b.Op("Sub", "x_centered", []string{inX, keyPreBias}), graphs.Float, "R", n)
	}
	pre := b.Type(b.Op("Gemm", "latents_pre_act", []string{xc, keyEncoder, keyLatentBias}, transB), graphs.Float, "R", N)
	vjpEncoder := keyEncoder
	switch act.Name {
	case ReLU:
		b.Op("Relu", outLatents, []string{pre})
	case Identity:
		b.Op("Identity", outLatents, []string{pre})
	case TopK:
		k := b.ConstI64("topk_k", []int64{1}, int64(act.K))
		vals, idx := "topk_values", "topk_indices"
		b.OpN("TopK", []string{vals, idx}, []string{pre, k},
			graphs.AttrInt("axis", -1), graphs.AttrInt("largest", 1), graphs.AttrInt("sorted", 1))
		b.Type(vals, graphs.Float, "R", fmt.Sprint(act.K))
		b.Type(idx, graphs.Int64, "R", fmt.Sprint(act.K))
		if act.PostAct == ReLU {
			vals = b.Op("Relu", "topk_postact", []string{vals})
		}
		shape := b.Op("Shape", "latents_shape", []string{pre})
		zero := &onnxpb.TensorProto{Dims: []int64{1}, DataType: proto.Int32(int32(graphs.Float)), FloatData: []float32{0}}
		zeros := b.Op("ConstantOfShape", "latents_zeros", []string{shape}, graphs.AttrTensor("value", zero))
		b.Op("ScatterElements", outLatents, []string{zeros, idx, vals}, graphs.AttrInt("axis", -1))
	case JumpReLU:
		// ReLU(pre)·(pre > t) is pre where pre > max(t, 0), else 0: one
		// compare and one select (max(t, 0) is folded once by the runtime).
		zero := b.ConstF32("jump_zero", nil, 0)
		t := b.Op("Max", "jump_threshold", []string{keyThreshold, zero})
		b.Op("Where", outLatents, []string{b.Op("Greater", "jump_keep", []string{pre, t}), pre, zero})
	case Gated:
		zero := b.ConstF32("gate_zero", nil, 0)
		open := b.Op("Cast", "gate_open", []string{b.Op("Greater", "", []string{pre, zero})}, graphs.AttrInt("to", int64(graphs.Float)))
		mag := b.Op("Relu", "magnitude", []string{b.Op("Gemm", "magnitude_pre_act", []string{xc, keyMagEncoder, keyMagBias}, transB)})
		b.Op("Mul", outLatents, []string{mag, open})
		vjpEncoder = keyMagEncoder
	default:
		return nil, fmt.Errorf("sae graph: activation %q", act.Name)
	}
	b.Output(outLatents, graphs.Float, "R", N)

	b.Op("Gemm", outRecon, []string{inZ, keyDecoder, keyPreBias}, transB)
	b.Output(outRecon, graphs.Float, "R", M)

	wSel := b.Type(b.Op("Gather", "encoder_rows", []string{keyEncoder, inLatentIdx}, graphs.AttrInt("axis", 0)), graphs.Float, "S", n)
	bSel := b.Type(b.Op("Gather", "latent_bias_sel", []string{keyLatentBias, inLatentIdx}, graphs.AttrInt("axis", 0)), graphs.Float, "S")
	b.Op("Gemm", outPreAct, []string{xc, wSel, bSel}, transB)
	b.Output(outPreAct, graphs.Float, "R", "S")

	b.Op("MatMul", outVJPDec, []string{inGradRec, keyDecoder})
	b.Output(outVJPDec, graphs.Float, "R", N)
	gPre := inGradLat
	if act.Name != Identity {
		zero := b.ConstF32("zero", nil, 0)
		active := b.Op("Cast", "active", []string{b.Op("Not", "", []string{b.Op("Equal", "", []string{outLatents, zero})})},
			graphs.AttrInt("to", int64(graphs.Float)))
		gPre = b.Op("Mul", "grad_pre_act", []string{inGradLat, active})
	}
	b.Op("MatMul", outVJPEnc, []string{gPre, vjpEncoder})
	b.Output(outVJPEnc, graphs.Float, "R", n)
	if skip {
		b.Op("Gemm", outSkip, []string{inXSkip, keySkip}, transB)
		b.Output(outSkip, graphs.Float, "R", M)
		b.Op("MatMul", outVJPSkip, []string{inGradRec, keySkip})
		b.Output(outVJPSkip, graphs.Float, "R", n)
	}
	return b.Model(), nil
}
