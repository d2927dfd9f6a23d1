package analysis_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/onnx-tdb/onnx-tdb/analysis"
	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/bpe"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// The golden test model: a tiny random GPT-2 in TDB's checkpoint format.
const checkpoint = "../testdata/golden/model"

// This example asks the three questions of an indirect-object prompt:
// where the signal flows (patching), what each layer predicts (lens), and
// which components write the answer (direct logit attribution).
func Example() {
	ctx := context.Background()
	cache, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(cache)
	dir, err := export.Resolve(ctx, checkpoint, export.ResolveOptions{Fetch: fetch.Options{Dir: cache}})
	if err != nil {
		log.Fatal(err)
	}
	t, err := modelctx.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	m, err := analysis.New(t)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	tok, _ := bpe.GPT2()
	clean := tok.Encode("After Mary and John left, John gave a book to")
	corrupted := tok.Encode("After John and Mary left, Mary gave a book to")
	mary, john := tok.Encode(" Mary")[0], tok.Encode(" John")[0]
	metric := analysis.Metric{Kind: analysis.LogitDiff, Target: mary, Distractor: john}

	// Activation patching: every layer x position of the residual stream.
	res, err := m.Patch(ctx, analysis.PatchSpec{Clean: clean, Corrupted: corrupted,
		Point: hooks.PostMLP, Per: analysis.PerPosition, Metric: metric})
	if err != nil {
		log.Fatal(err)
	}
	last := len(clean) - 1
	fmt.Printf("patching: %d x %d; last layer, last position: %.2f\n", len(res.Layers), res.Cols, res.Normalized[1][last])

	// Logit lens and direct logit attribution over one captured run.
	c, err := m.Run(ctx, [][]int{clean})
	if err != nil {
		log.Fatal(err)
	}
	lens, err := c.Lens(ctx, 0, analysis.LensOptions{K: 5, Target: mary, HasTarget: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("lens rows:", lens.Labels)
	dec, err := c.DecomposeResid(ctx, analysis.PerLayer)
	if err != nil {
		log.Fatal(err)
	}
	attr, err := c.LogitAttrs(dec, metric)
	if err != nil {
		log.Fatal(err)
	}
	sum := 0.0
	for _, v := range attr.At(0, last) {
		sum += v
	}
	fmt.Println("components:", attr.Labels)
	fmt.Printf("sum %.4f, model %.4f\n", sum, attr.Actual.Data[last])
	// Output:
	// patching: 2 x 11; last layer, last position: 1.00
	// lens rows: [resid.post_emb resid.torso.post_mlp@0 resid.torso.post_mlp@1]
	// components: [embed pos_embed L0.attn L0.mlp L1.attn L1.mlp ln_f.bias]
	// sum -0.9054, model -0.9054
}
