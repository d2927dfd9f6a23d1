package modelctx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func mcGolden(t *testing.T) *ONNXModelContext {
	t.Helper()
	mc, err := NewModelContext(goldenModel(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	return mc
}

// ckptPiece reads a golden checkpoint tensor.
func ckptPiece(t *testing.T, key string) *torchpt.Tensor {
	t.Helper()
	p, err := torchpt.LoadTensor(filepath.Join(golden.ModelDir(), "model_pieces", key+".pt"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ckptWeight computes the original's get_weight from a checkpoint piece
// with plain loops, independently of the code under test.
func ckptWeight(t *testing.T, loc WeightLocationType, layer, H int) ([]int, []float32) {
	l := func(s string) string { return fmt.Sprintf("xf_layers.%d.%s", layer, s) }
	transpose := func(p *torchpt.Tensor) ([]int, []float32) { // "ab->ba"
		R, C := p.Shape[0], p.Shape[1]
		out := make([]float32, R*C)
		for r := 0; r < R; r++ {
			for c := 0; c < C; c++ {
				out[c*R+r] = p.F32[r*C+c]
			}
		}
		return []int{C, R}, out
	}
	qkv := func(p *torchpt.Tensor) ([]int, []float32) { // [H*dh, D] -> split(0) -> hqr->hrq
		D, dh := p.Shape[1], p.Shape[0]/H
		out := make([]float32, len(p.F32))
		for h := 0; h < H; h++ {
			for r := 0; r < D; r++ {
				for q := 0; q < dh; q++ {
					out[(h*D+r)*dh+q] = p.F32[(h*dh+q)*D+r]
				}
			}
		}
		return []int{H, D, dh}, out
	}
	switch loc {
	case WeightMLPToHidden:
		return transpose(ckptPiece(t, l("mlp.in_layer.weight")))
	case WeightMLPToResidual:
		return transpose(ckptPiece(t, l("mlp.out_layer.weight")))
	case WeightEmbedding:
		p := ckptPiece(t, "tok_embed.weight")
		return p.Shape, p.F32
	case WeightUnembedding:
		return transpose(ckptPiece(t, "unembed.weight"))
	case WeightPositionEmbedding:
		p := ckptPiece(t, "pos_embed.weight")
		return p.Shape, p.F32
	case WeightAttnToQuery:
		return qkv(ckptPiece(t, l("attn.q_proj.weight")))
	case WeightAttnToKey:
		return qkv(ckptPiece(t, l("attn.k_proj.weight")))
	case WeightAttnToValue:
		return qkv(ckptPiece(t, l("attn.v_proj.weight")))
	case WeightAttnToResidual: // [D, H*dv] -> split(1) -> rhv->hvr
		p := ckptPiece(t, l("attn.out_proj.weight"))
		D, dv := p.Shape[0], p.Shape[1]/H
		out := make([]float32, len(p.F32))
		for h := 0; h < H; h++ {
			for v := 0; v < dv; v++ {
				for r := 0; r < D; r++ {
					out[(h*dv+v)*D+r] = p.F32[r*H*dv+h*dv+v]
				}
			}
		}
		return []int{H, dv, D}, out
	case WeightLayerNormGainFinal:
		p := ckptPiece(t, "final_ln.weight")
		return p.Shape, p.F32
	case WeightLayerNormBiasFinal:
		p := ckptPiece(t, "final_ln.bias")
		return p.Shape, p.F32
	case WeightLayerNormGainPreAttn:
		p := ckptPiece(t, l("ln_1.weight"))
		return p.Shape, p.F32
	case WeightLayerNormGainPreMLP:
		p := ckptPiece(t, l("ln_2.weight"))
		return p.Shape, p.F32
	}
	t.Fatalf("no expectation for %s", loc)
	return nil, nil
}

// wltLayers lists the layer arguments of a location in a 2-layer model.
func wltLayers(loc WeightLocationType) []int {
	if loc.HasNoLayers() {
		return []int{NoLayer}
	}
	return []int{0, 1}
}

func TestWeightMatchesCheckpointPieces(t *testing.T) {
	mc := mcGolden(t)
	shapes := map[WeightLocationType][]int{
		WeightMLPToHidden: {64, 256}, WeightMLPToResidual: {256, 64}, WeightEmbedding: {50257, 64},
		WeightUnembedding: {64, 50257}, WeightPositionEmbedding: {64, 64}, WeightAttnToQuery: {4, 64, 16},
		WeightAttnToKey: {4, 64, 16}, WeightAttnToValue: {4, 64, 16}, WeightAttnToResidual: {4, 16, 64},
		WeightLayerNormGainFinal: {64}, WeightLayerNormBiasFinal: {64}, WeightLayerNormGainPreAttn: {64},
		WeightLayerNormGainPreMLP: {64},
	}
	if len(shapes) != len(WeightLocationTypes()) {
		t.Fatalf("%d shapes for %d types", len(shapes), len(WeightLocationTypes()))
	}
	for _, loc := range WeightLocationTypes() {
		for _, layer := range wltLayers(loc) {
			t.Run(describeLoc(loc, layer), func(t *testing.T) {
				got, err := mc.Weight(loc, layer)
				if err != nil {
					t.Fatal(err)
				}
				wantShape, want := ckptWeight(t, loc, layer, 4)
				if !reflect.DeepEqual(got.Shape, wantShape) || !reflect.DeepEqual(got.Shape, shapes[loc]) {
					t.Fatalf("shape %v, want %v (table %v)", got.Shape, wantShape, shapes[loc])
				}
				for i := range want {
					if got.Data[i] != want[i] {
						t.Fatalf("index %d: %v, want %v", i, got.Data[i], want[i])
					}
				}
				// The caller owns the result: editing it changes nothing.
				got.Data[0] += 1
				again, err := mc.Weight(loc, layer)
				if err != nil || again.Data[0] != want[0] {
					t.Fatalf("weights changed after editing a result: %v", err)
				}
			})
		}
	}
}

func TestWeightNormalizeDim(t *testing.T) {
	mc := mcGolden(t)
	cases := []struct {
		loc WeightLocationType
		dim Dimension
	}{
		{WeightAttnToQuery, DimResidualStreamChannels},
		{WeightAttnToQuery, DimQueryAndKeyChannels},
		{WeightAttnToResidual, DimResidualStreamChannels},
		{WeightMLPToHidden, DimResidualStreamChannels},
		{WeightMLPToResidual, DimResidualStreamChannels},
		{WeightUnembedding, DimResidualStreamChannels},
		{WeightEmbedding, DimVocabSize},
		{WeightLayerNormGainFinal, DimResidualStreamChannels},
	}
	for _, c := range cases {
		t.Run(string(c.loc)+"/"+string(c.dim), func(t *testing.T) {
			layer := wltLayers(c.loc)[len(wltLayers(c.loc))-1]
			raw, err := mc.Weight(c.loc, layer)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mc.Weight(c.loc, layer, NormalizeDim(c.dim))
			if err != nil {
				t.Fatal(err)
			}
			ax, err := c.loc.DimensionIndex(c.dim)
			if err != nil {
				t.Fatal(err)
			}
			// F.normalize: x / max(||x||_2, 1e-12) along ax.
			inner := 1
			for _, d := range raw.Shape[ax+1:] {
				inner *= d
			}
			n := raw.Shape[ax]
			for o := 0; o < len(raw.Data)/(n*inner); o++ {
				for i := 0; i < inner; i++ {
					var ss float64
					for k := 0; k < n; k++ {
						x := float64(raw.Data[o*n*inner+k*inner+i])
						ss += x * x
					}
					norm := math.Max(math.Sqrt(ss), 1e-12)
					for k := 0; k < n; k++ {
						idx := o*n*inner + k*inner + i
						want := float64(raw.Data[idx]) / norm
						if d := math.Abs(float64(got.Data[idx]) - want); d > 1e-6 {
							t.Fatalf("index %d: %v, want %v", idx, got.Data[idx], want)
						}
					}
				}
			}
		})
	}
	if _, err := mc.Weight(WeightMLPToHidden, 0, NormalizeDim(DimAttnHeads)); !errors.Is(err, ErrUnknownDimension) {
		t.Fatalf("normalising along a dimension the weight lacks: %v", err)
	}
}

func TestWeightErrors(t *testing.T) {
	mc := mcGolden(t)
	cases := []struct {
		loc   WeightLocationType
		layer int
		want  error
	}{
		{WeightEmbedding, 0, ErrLayer},
		{WeightLayerNormGainFinal, 1, ErrLayer},
		{WeightMLPToHidden, NoLayer, ErrLayer},
		{WeightAttnToQuery, 2, ErrLayer},
		{WeightAttnToKey, -5, ErrLayer},
		{WeightLocationType("mlp.bias"), 0, ErrUnknownLocation},
	}
	for _, c := range cases {
		if _, err := mc.Weight(c.loc, c.layer); !errors.Is(err, c.want) {
			t.Errorf("Weight(%s, %d) = %v, want %v", c.loc, c.layer, err, c.want)
		}
	}
}

func TestUnembeddingWithLnGainAndEmbedding(t *testing.T) {
	mc := mcGolden(t)
	got, err := UnembeddingWithLnGain(mc)
	if err != nil {
		t.Fatal(err)
	}
	u := ckptPiece(t, "unembed.weight") // [V, D]
	g := ckptPiece(t, "final_ln.weight")
	V, D := u.Shape[0], u.Shape[1]
	if !reflect.DeepEqual(got.Shape, []int{D, V}) {
		t.Fatalf("shape %v", got.Shape)
	}
	for o := 0; o < D; o++ {
		for v := 0; v < V; v += 97 {
			if want := u.F32[v*D+o] * g.F32[o]; got.Data[o*V+v] != want {
				t.Fatalf("[%d,%d] = %v, want %v", o, v, got.Data[o*V+v], want)
			}
		}
	}
	emb, err := Embedding(mc)
	if err != nil {
		t.Fatal(err)
	}
	e := ckptPiece(t, "tok_embed.weight")
	if !reflect.DeepEqual(emb.Shape, e.Shape) || !reflect.DeepEqual(emb.Data, e.F32) {
		t.Fatal("embedding differs from tok_embed.weight")
	}
	if _, err := UnembeddingWithLnGain(StubModelContext{}); !errors.Is(err, ErrNotImplemented) {
		t.Fatalf("stub: %v", err)
	}
}

func TestDimensionsOfTheGoldenModel(t *testing.T) {
	mc := mcGolden(t)
	cfg := golden.Load(t).Model.Config
	want := map[Dimension]int{
		DimMaxContextLength: cfg.CtxWindow, DimResidualStreamChannels: cfg.DModel, DimVocabSize: 50257,
		DimAttnHeads: cfg.NHeads, DimQueryAndKeyChannels: cfg.DModel / cfg.NHeads, DimValueChannels: cfg.DModel / cfg.NHeads,
		DimMLPActs: int(float64(cfg.DModel) * cfg.MMLP), DimLayers: cfg.NLayers,
	}
	for _, d := range Dimensions() {
		got, err := mc.DimSize(d)
		if w, ok := want[d]; ok {
			if err != nil || got != w {
				t.Errorf("DimSize(%s) = %d, %v; want %d", d, got, err, w)
			}
		} else if !errors.Is(err, ErrUnknownDimension) {
			t.Errorf("DimSize(%s) = %d, %v; want ErrUnknownDimension", d, got, err)
		}
	}
	helpers := map[string][2]int{
		"n_layers": {mc.NLayers(), 2}, "n_vocab": {mc.NVocab(), 50257}, "n_attention_heads": {mc.NAttentionHeads(), 4},
		"n_neurons": {mc.NNeurons(), 256}, "n_residual_stream_channels": {mc.NResidualStreamChannels(), 64}, "n_context": {mc.NContext(), 64},
	}
	for name, v := range helpers {
		if v[0] != v[1] {
			t.Errorf("%s = %d, want %d", name, v[0], v[1])
		}
	}
	shape, err := mc.ShapeFromSpec([]Dimension{DimAttnHeads, DimSingleton, DimMLPActs})
	if err != nil || !reflect.DeepEqual(shape, []int{4, 1, 256}) {
		t.Fatalf("ShapeFromSpec = %v, %v", shape, err)
	}
	if _, err := mc.ShapeFromSpec([]Dimension{DimSequenceTokens}); !errors.Is(err, ErrUnknownDimension) {
		t.Fatalf("sequence dimension: %v", err)
	}
	if mc.ModelName() != "golden" || mc.Device() != "cpu" {
		t.Fatalf("name %q device %q", mc.ModelName(), mc.Device())
	}
	got, err := mc.ModelConfig()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"enc": "gpt2", "ctx_window": 64, "d_model": 64, "n_layers": 2, "m_attn": 1.0, "n_heads": 4, "m_mlp": 4.0} {
		if got[k] != v {
			t.Errorf("config[%s] = %v, want %v", k, got[k], v)
		}
	}
}

func TestTokenizerHelpersOnGoldenCases(t *testing.T) {
	mc := mcGolden(t)
	tok, err := mc.Encoding()
	if err != nil || tok.Name() != "gpt2" {
		t.Fatalf("encoding: %v", err)
	}
	for _, c := range golden.Load(t).Tokenizer.Cases {
		ids, err := mc.Encode(c.Text)
		if err != nil || !reflect.DeepEqual(ids, c.IDs) {
			t.Errorf("Encode(%q) = %v, %v; want %v", c.Text, ids, err, c.IDs)
		}
		text, err := mc.Decode(c.IDs)
		if err != nil || text != c.Text {
			t.Errorf("Decode(%v) = %q, %v", c.IDs, text, err)
		}
		strs, err := mc.DecodeTokenList(c.IDs)
		if err != nil || len(strs) != len(c.IDs) {
			t.Fatalf("DecodeTokenList: %v", err)
		}
		for i, id := range c.IDs {
			s, err := mc.DecodeToken(id)
			if err != nil || s != strs[i] {
				t.Errorf("DecodeToken(%d) = %q, want %q", id, s, strs[i])
			}
		}
	}
	for _, c := range []struct {
		s    string
		id   int
		fail bool
	}{{"Hello", 15496, false}, {" world", 995, false}, {"<|endoftext|>", 50256, false}, {"Hello world", 0, true}, {"", 0, true}} {
		id, err := mc.EncodeTokenStr(c.s)
		if c.fail != errors.Is(err, ErrInvalidToken) || (!c.fail && id != c.id) {
			t.Errorf("EncodeTokenStr(%q) = %d, %v", c.s, id, err)
		}
	}
	ids, err := mc.EncodeTokenStrList([]string{"Hello", " world"})
	if err != nil || !reflect.DeepEqual(ids, []int{15496, 995}) {
		t.Fatalf("EncodeTokenStrList = %v, %v", ids, err)
	}
	if _, err := mc.EncodeTokenStrList([]string{"Hello", "two tokens"}); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("EncodeTokenStrList with a two-token string: %v", err)
	}
	// Partial UTF-8 comes out as U+FFFD, as tiktoken's decode does.
	if s, err := mc.DecodeToken(10545); err != nil || s != " \ufffd" {
		t.Fatalf("DecodeToken(10545) = %q, %v", s, err)
	}
}

func TestModelIsCreatedOnceAndOwned(t *testing.T) {
	mc, err := NewModelContext(goldenModel(t))
	if err != nil {
		t.Fatal(err)
	}
	m1, err := mc.Model()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := mc.Model()
	if err != nil || m1 != m2 {
		t.Fatalf("second Model() = %p, %v; want %p", m2, err, m1)
	}
	ids, _ := mc.Encode("Hello world")
	out, err := m1.Forward(context.Background(), [][]int{ids})
	if err != nil || out.Logits.Shape[2] != mc.NVocab() {
		t.Fatalf("forward: %v", err)
	}
	if err := mc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m1.Forward(context.Background(), [][]int{ids}); err == nil {
		t.Fatal("the context's model still runs after Close")
	}
	if _, err := mc.Model(); err == nil {
		t.Fatal("Model after Close")
	}

	// A context made from an open model leaves it open.
	m := openGolden(t)
	mc2, err := m.ModelContext()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := mc2.Model(); got != m {
		t.Fatal("ModelContext().Model() is not the model it came from")
	}
	if w, err := mc2.Weight(WeightLayerNormGainPreMLP, 1); err != nil || len(w.Data) != 64 {
		t.Fatalf("weight: %v", err)
	}
	mc2.Close()
	if _, err := m.Forward(context.Background(), [][]int{ids}); err != nil {
		t.Fatalf("model closed with its context: %v", err)
	}
}

func TestStubModelContext(t *testing.T) {
	s := StubModelContext{Sizes: map[Dimension]int{DimLayers: 3, DimMLPActs: 12}}
	if s.NLayers() != 3 || s.NNeurons() != 12 || s.NVocab() != 0 || s.ModelName() != "stub" || s.Device() != "cpu" {
		t.Fatal("stub sizes")
	}
	if sh, err := s.ShapeFromSpec([]Dimension{DimMLPActs, DimSingleton}); err != nil || !reflect.DeepEqual(sh, []int{12, 1}) {
		t.Fatalf("ShapeFromSpec = %v, %v", sh, err)
	}
	var mc ModelContext = s
	errs := []error{}
	_, err := mc.DimSize(DimVocabSize)
	errs = append(errs, err)
	_, err = mc.Weight(WeightEmbedding, NoLayer)
	errs = append(errs, err)
	_, err = mc.Encode("x")
	errs = append(errs, err)
	_, err = mc.Encoding()
	errs = append(errs, err)
	_, err = mc.Model()
	errs = append(errs, err)
	_, err = mc.ModelConfig()
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, ErrNotImplemented) {
			t.Errorf("call %d: %v, want ErrNotImplemented", i, err)
		}
	}
}

func TestActivationShapesMatchHookPoints(t *testing.T) {
	// The standard activation types' shape specs agree with the hook tree's
	// layouts (batch dropped; keys = attended-to tokens).
	dimOf := map[hooks.Dim]Dimension{
		hooks.Seq: DimSequenceTokens, hooks.Keys: DimAttendedToSequenceTokens, hooks.Model: DimResidualStreamChannels,
		hooks.Heads: DimAttnHeads, hooks.FF: DimMLPActs, hooks.Vocab: DimVocabSize, hooks.One: DimSingleton,
	}
	for _, a := range StandardActivationLocationTypes() {
		p, _ := a.HookPoint()
		var got []Dimension
		for _, d := range p.Shape()[1:] {
			switch {
			case d == hooks.HeadDim && a == ActAttnValue, d == hooks.HeadDim && a == ActAttnWeightedSumOfValues:
				got = append(got, DimValueChannels)
			case d == hooks.HeadDim:
				got = append(got, DimQueryAndKeyChannels)
			default:
				got = append(got, dimOf[d])
			}
		}
		if !reflect.DeepEqual(got, a.ShapeSpecPerTokenSequence()) {
			t.Errorf("%s: hook point %s is %v, shape spec %v", a, p, got, a.ShapeSpecPerTokenSequence())
		}
		if a.HasNoLayers() == p.PerLayer() {
			t.Errorf("%s: has_no_layers %v, hook point per layer %v", a, a.HasNoLayers(), p.PerLayer())
		}
	}
}
