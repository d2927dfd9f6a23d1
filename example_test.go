package onnxtdb_test

import (
	"context"
	"fmt"
	"log"

	"github.com/onnx-tdb/onnx-tdb/export"
	_ "github.com/onnx-tdb/onnx-tdb/export/arch/all" // the built-in architectures
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// Example is the README's Go quick start, as written there, on the README's
// own model (the tiny golden GPT-2 in testdata): zero one MLP neuron while
// reading the attention pattern.
func Example() {
	ctx := context.Background()

	// A TDB checkpoint folder, gpt2-small|medium|large|xl, an https:// or az:// URL, or an exported folder.
	dir, err := export.Resolve(ctx, "testdata/golden/model", export.ResolveOptions{})
	if err != nil {
		log.Fatal(err)
	}
	m, err := modelctx.Open(dir) // modelctx.WithDevice(runtime.CUDA, 0) for the GPU
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	tok, err := m.Tokenizer() // the model's own (GPT-2's byte-pair encoding here)
	if err != nil {
		log.Fatal(err)
	}
	rows := [][]int{tok.Encode("The quick brown fox")}

	// Zero neuron 7 of mlp.post_act at layer 1 (this model has 2 layers of 256 neurons).
	h := hooks.New()
	remove := h.Add(hooks.MLP.PostAct, func(ctx *hooks.Context, t *hooks.Tensor) (*hooks.Tensor, error) {
		return t, t.FillTrailing(0, 7) // t is [batch, tokens, d_ff]; edit in place or return a new tensor
	}, hooks.AtLayers(1))
	defer remove()

	out, err := m.Forward(ctx, rows,
		modelctx.WithHooks(h),
		modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{hooks.Attn.QKProbs}})) // read-only: no cut
	if err != nil {
		log.Fatal(err)
	}
	probs := out.Activations[hooks.Site{Point: hooks.Attn.QKProbs, Layer: 0}] // [batch, query, key, heads]
	logits := out.Logits                                                      // [batch, tokens, vocab]
	fmt.Println("attn.qk_probs@0", probs.Shape, "logits", logits.Shape)
	// Output: attn.qk_probs@0 [1 4 4 4] logits [1 4 50257]
}
