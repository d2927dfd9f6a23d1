package modelctx_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/bpe"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// This example attributes a next-token logit to the MLP neurons of layer 1
// (activation × gradient), while a gradient hook ablates the gradient of
// head 0's value output and the LayerNorm scales are detached, as the
// original's attribution code does.
func ExampleTransformer_Backward() {
	ctx := context.Background()
	cache, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(cache)
	dir, err := export.Resolve(ctx, checkpoint, export.ResolveOptions{Fetch: fetch.Options{Dir: cache}})
	if err != nil {
		log.Fatal(err)
	}
	m, err := modelctx.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	tok, _ := bpe.GPT2()
	rows := [][]int{tok.Encode("The quick brown fox")}
	target := tok.Encode(" jumps")[0]

	h := hooks.New()
	h.Add(hooks.Attn.VOut, func(_ *hooks.Context, g *hooks.Tensor) (*hooks.Tensor, error) {
		return g, g.FillTrailing(0, 0) // head 0's gradient stops here
	}, hooks.InStage(hooks.Bwd), hooks.AtLayers(0))

	mlp := &modelctx.Filter{Points: []hooks.Point{hooks.MLP.PostAct}, Layers: []int{1}}
	g, err := m.Backward(ctx, rows, modelctx.LogitLoss(0, -1, target),
		modelctx.WithHooks(h), modelctx.DetachLayerNormScale(),
		modelctx.GradsAt(mlp), modelctx.Capture(mlp))
	if err != nil {
		log.Fatal(err)
	}
	site := hooks.Site{Point: hooks.MLP.PostAct, Layer: 1}
	act, grad := g.Activations[site], g.Grads[site]
	best, bestVal := 0, float32(0)
	for n := 0; n < act.Shape[2]; n++ { // the last token's neurons
		if v := act.At(0, 3, n) * grad.At(0, 3, n); v > bestVal {
			best, bestVal = n, v
		}
	}
	fmt.Println("gradient at", site, grad.Shape)
	fmt.Printf("neuron %d raises the logit most (%.2f)\n", best, bestVal)
	// Output:
	// gradient at mlp.post_act@1 [1 4 256]
	// neuron 113 raises the logit most (0.13)
}
