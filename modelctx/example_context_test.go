package modelctx_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// A ModelContext answers the original's questions about a model (sizes,
// weights in standard layouts, tokens) straight from the exported folder.
func ExampleNewModelContext() {
	tmp, err := os.MkdirTemp("", "example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(tmp)
	ck, err := gpt2.OpenCheckpoint(golden.ModelDir()) // a small random GPT-2
	if err != nil {
		panic(err)
	}
	dir := filepath.Join(tmp, "golden")
	if _, err := export.Write(context.Background(), ck, dir, export.WriteOptions{}); err != nil {
		panic(err)
	}

	mc, err := modelctx.NewModelContext(dir)
	if err != nil {
		panic(err)
	}
	defer mc.Close()
	fmt.Println("layers", mc.NLayers(), "heads", mc.NAttentionHeads(), "neurons", mc.NNeurons(), "vocab", mc.NVocab())
	wq, _ := mc.Weight(modelctx.WeightAttnToQuery, 1) // [heads, d_model, d_head]
	fmt.Println("attn.to_query", wq.Shape)
	u, _ := modelctx.UnembeddingWithLnGain(mc) // [d_model, vocab]
	fmt.Println("unembedding with ln gain", u.Shape)
	id, _ := mc.EncodeTokenStr(" world")
	fmt.Println("' world' is token", id)
	_, err = mc.EncodeTokenStr("Hello world")
	fmt.Println("'Hello world' is one token:", !errors.Is(err, modelctx.ErrInvalidToken))
	// Output:
	// layers 2 heads 4 neurons 256 vocab 50257
	// attn.to_query [4 64 16]
	// unembedding with ln gain [64 50257]
	// ' world' is token 995
	// 'Hello world' is one token: false
}

// Any ONNX transformer plus a hook map becomes a model whose points can be
// read and written: here a Llama-style graph, whose map names its points in
// its own terms (mlp_hidden is the analogue of mlp.post_act).
func ExampleImport() {
	tmp, err := os.MkdirTemp("", "example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(golden.Dir(), "foreign_llama")
	dir := filepath.Join(tmp, "llama")
	man, err := modelctx.Import(filepath.Join(src, "model.onnx"), filepath.Join(src, "hookmap.json"), dir, export.ImportOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println("dimensions", man.Config.NLayers, man.Config.DModel, man.Config.DFF, man.Config.NVocab)

	m, err := modelctx.Open(dir)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	site, _ := m.ParseSite("mlp_hidden@1")
	fmt.Println("mlp_hidden@1 is", site)
	_, err = m.ParseSite("attn.q@0")
	fmt.Println("attn.q@0:", err)

	tokens := [][]int{{0, 245, 388, 302, 27, 312, 320, 287, 36, 374, 37}}
	h := hooks.New()
	hooks.Edit{Site: site, Index: []int{5}, Kind: hooks.Ablate}.Register(h) // unit 5 to 0
	out, err := m.Forward(context.Background(), tokens, modelctx.WithHooks(h), modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{hooks.MLPPostAct}}))
	if err != nil {
		panic(err)
	}
	act := out.Activations[site]
	fmt.Println("mlp_hidden@1", act.Shape, "unit 5 at position 0:", act.At(0, 0, 5))
	// Output:
	// dimensions 2 64 176 512
	// mlp_hidden@1 is mlp.post_act@1
	// attn.q@0: model has no such hook point: attn.q@0 (model llama)
	// mlp_hidden@1 [1 11 176] unit 5 at position 0: 0
}
