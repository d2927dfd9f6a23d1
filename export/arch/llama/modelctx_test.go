package llama_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/llama"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// TestModelContextWeights reads the standard weight locations: shapes as
// the original's, values the checkpoint's (q_proj split into heads).
func TestModelContextWeights(t *testing.T) {
	for _, f := range []fixture{tinyGQA, tinyLinear} {
		m, tr := exportFixture(t, f, 4)
		mc, err := tr.ModelContext()
		if err != nil {
			t.Fatal(err)
		}
		D, H, dh, F, V := f.hidden, f.heads, f.headDim, f.inter, f.vocab
		want := map[modelctx.WeightLocationType][]int{
			modelctx.WeightEmbedding:            {V, D},
			modelctx.WeightUnembedding:          {D, V},
			modelctx.WeightMLPToHidden:          {D, F},
			modelctx.WeightMLPToResidual:        {F, D},
			modelctx.WeightAttnToQuery:          {H, D, dh},
			modelctx.WeightAttnToResidual:       {H, dh, D},
			modelctx.WeightLayerNormGainPreAttn: {D},
			modelctx.WeightLayerNormGainFinal:   {D},
		}
		for loc, shape := range want {
			layer := 1
			if loc.HasNoLayers() {
				layer = modelctx.NoLayer
			}
			w, err := mc.Weight(loc, layer)
			if err != nil {
				t.Fatalf("%s: %v", loc, err)
			}
			if fmt.Sprint(w.Shape) != fmt.Sprint(shape) {
				t.Errorf("%s: shape %v, want %v", loc, w.Shape, shape)
			}
		}
		// attn.to_query[h, r, d] is q_proj.weight[h*dh+d, r].
		q, _ := mc.Weight(modelctx.WeightAttnToQuery, 1)
		src := m.w["model.layers.1.self_attn.q_proj.weight"]
		if got, w := q.At(2, 5, 3), src[(2*dh+3)*D+5]; got != w {
			t.Errorf("attn.to_query[2,5,3] = %g, want %g", got, w)
		}
		_, err = mc.Weight(modelctx.WeightAttnToKey, 0)
		if gqa := f.kvHeads != f.heads; gqa != errors.Is(err, modelctx.ErrNoWeight) {
			t.Errorf("attn.to_key with %d of %d kv heads: %v", f.kvHeads, f.heads, err)
		}
		if _, err := mc.Weight(modelctx.WeightPositionEmbedding, modelctx.NoLayer); !errors.Is(err, modelctx.ErrNoWeight) {
			t.Errorf("position_embedding: %v, want ErrNoWeight", err)
		}
	}
}

// TestOutLayerAtPostAct checks that hooks at mlp.post_act get down_proj as
// the out layer: applied to mlp.post_act it gives resid.torso.delta_mlp.
func TestOutLayerAtPostAct(t *testing.T) {
	_, tr := exportFixture(t, tinyGQA, 5)
	var got *hooks.Tensor
	h := hooks.New()
	h.Observe(hooks.MLPPostAct, func(c *hooks.Context, x *hooks.Tensor) error {
		v, ok := c.Value(modelctx.OutLayerKey)
		if !ok {
			return errors.New("no out layer")
		}
		var err error
		got, err = v.(*modelctx.OutLayer).Apply(x)
		return err
	}, hooks.AtLayers(1))
	site := hooks.Site{Point: hooks.DeltaMLP, Layer: 1}
	out, err := tr.Forward(context.Background(), [][]int{{1, 2, 3, 4}}, modelctx.WithHooks(h),
		modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{hooks.DeltaMLP}, Layers: []int{1}}))
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		t.Fatal("hook not called")
	}
	if _, fail := golden.Diff(got.Data, out.Activations[site].Data, 1e-4); fail != "" {
		t.Error(fail)
	}
}

// TestTokenizerFolder exports a folder with a tokenizer.json: the export
// keeps it, text prompts sample and the continuations decode to strings.
func TestTokenizerFolder(t *testing.T) {
	src := t.TempDir()
	f := tinyGQA
	f.vocab = 302
	f.write(t, src, 6)
	if err := os.WriteFile(filepath.Join(src, llama.TokenizerFile), tinyTokenizerJSON(t), 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := llama.OpenCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	out := filepath.Join(t.TempDir(), "exported")
	man, err := export.Write(context.Background(), ck, out, export.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if man.Tokenizer == "" {
		t.Fatal("manifest names no tokenizer")
	}
	tr, err := modelctx.Open(out, modelctx.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	res, err := tr.Sample(context.Background(), modelctx.TextPrompts("hello the", "the"), modelctx.WithNumTokens(4), modelctx.WithTemperature(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Strings) != 2 || len(res.Tokens[0]) != 4 {
		t.Fatalf("result %+v", res)
	}
	mc, err := tr.ModelContext()
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := mc.Encode("hello the"); err != nil || fmt.Sprint(ids) != "[259 262]" {
		t.Errorf("Encode: %v %v", ids, err)
	}
	// A broken tokenizer.json is refused at export, not at first use.
	if err := os.WriteFile(filepath.Join(src, llama.TokenizerFile), []byte(`{"model":{"type":"Unigram"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = export.Write(context.Background(), ck, filepath.Join(t.TempDir(), "bad"), export.WriteOptions{})
	if !errors.Is(err, export.ErrCheckpoint) || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("broken tokenizer.json: %v", err)
	}
}

// tinyTokenizerJSON has every byte as a token, a few merges and two
// special tokens (ids 0..301).
func tinyTokenizerJSON(t *testing.T) []byte {
	t.Helper()
	vocab := map[string]int{}
	n := 0
	for b := 0; b < 256; b++ {
		r := rune(b)
		if !(b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE) {
			r = rune(256 + n)
			n++
		}
		vocab[string(r)] = b
	}
	merges := []string{"h e", "l l", "he ll", "hell o", "Ġ hello", "Ġ t", "Ġt he"}
	for i, m := range merges {
		vocab[strings.ReplaceAll(m, " ", "")] = 256 + i
	}
	js := map[string]any{
		"added_tokens":  []any{map[string]any{"id": 300, "content": "<|begin_of_text|>", "special": true}, map[string]any{"id": 301, "content": "<|end_of_text|>", "special": true}},
		"normalizer":    nil,
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": merges},
	}
	dir := t.TempDir()
	writeJSONFile(t, filepath.Join(dir, "t.json"), js)
	b, err := os.ReadFile(filepath.Join(dir, "t.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNoSliceOp checks that no stage graph holds a Slice (ONNX Runtime's
// plugin CUDA provider crashes in it).
func TestNoSliceOp(t *testing.T) {
	c, err := llama.ParseConfig([]byte(`{"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,
"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":10}`))
	if err != nil {
		t.Fatal(err)
	}
	w := graphs.Weights{Location: "w.bin", Offsets: map[string][2]int64{}}
	for _, s := range llama.Weights(c) {
		w.Offsets[s.Name] = [2]int64{0, 4}
	}
	stages, err := llama.Stages(c, w)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]bool{}
	for _, st := range stages {
		for _, n := range st.GetGraph().GetNode() {
			ops[n.GetOpType()] = true
		}
	}
	if ops["Slice"] || !ops["Expand"] || !ops["Gather"] {
		t.Errorf("ops %v: want no Slice, the GQA Expand and the pad Gather", ops)
	}
	delete(w.Offsets, "norm.weight")
	if _, err := llama.Stages(c, w); err == nil || !strings.Contains(err.Error(), "norm.weight") {
		t.Errorf("missing weight: %v", err)
	}
}

// TestAbsentAndOwnPoints: a hook at a LayerNorm's post_mean_subtraction is
// an error (an RMSNorm has none); mlp.up is a point of this architecture,
// and mlp.post_act is silu(mlp.pre_act) times it.
func TestAbsentAndOwnPoints(t *testing.T) {
	_, tr := exportFixture(t, tinyGQA, 10)
	h := hooks.New()
	h.Observe(hooks.LnMLPPostMeanSubtraction, func(*hooks.Context, *hooks.Tensor) error { return nil })
	if _, err := tr.Forward(context.Background(), [][]int{{1, 2}}, modelctx.WithHooks(h)); err == nil {
		t.Error("a hook at resid.torso.ln_mlp.post_mean_subtraction ran without error")
	}
	pts := []hooks.Point{hooks.MLPPreAct, llama.MLPUp, hooks.MLPPostAct}
	out, err := tr.Forward(context.Background(), [][]int{{1, 2, 3}}, modelctx.Capture(&modelctx.Filter{Points: pts, Layers: []int{0}}))
	if err != nil {
		t.Fatal(err)
	}
	gate, up, post := out.Activations[hooks.Site{Point: pts[0]}], out.Activations[hooks.Site{Point: pts[1]}], out.Activations[hooks.Site{Point: pts[2]}]
	want := make([]float32, len(gate.Data))
	for i, g := range gate.Data {
		want[i] = float32(float64(g) / (1 + math.Exp(-float64(g))) * float64(up.Data[i]))
	}
	if _, fail := golden.Diff(post.Data, want, 1e-5); fail != "" {
		t.Error(fail)
	}
	if p, err := hooks.Parse("mlp.up"); err != nil || p != llama.MLPUp {
		t.Errorf("Parse(mlp.up) = %v, %v", p, err)
	}
}

// TestCommonNames: the common point names of hook maps name this model's
// sites (resid_pre@0 is resid.post_emb, resid_pre@1 resid.torso.post_mlp@0).
func TestCommonNames(t *testing.T) {
	_, tr := exportFixture(t, tinyGQA, 11)
	cases := map[string]hooks.Site{
		"resid_pre@0":  {Point: hooks.ResidPostEmb, Layer: -1},
		"resid_pre@1":  {Point: hooks.PostMLP, Layer: 0},
		"mlp_hidden@1": {Point: hooks.MLPPostAct, Layer: 1},
		"attn_out@0":   {Point: hooks.DeltaAttn, Layer: 0},
		"final_norm":   {Point: hooks.PostLnF, Layer: -1},
		"mlp.up@1":     {Point: llama.MLPUp, Layer: 1},
	}
	for name, want := range cases {
		got, err := tr.ParseSite(name)
		if err != nil || got != want {
			t.Errorf("ParseSite(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
}
