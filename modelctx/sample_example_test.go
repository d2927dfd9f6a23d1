package modelctx_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// exportTestModel exports the small test checkpoint (testdata/golden/model)
// into a temporary folder.
func exportTestModel() (dir string, cleanup func()) {
	tmp, err := os.MkdirTemp("", "onnx-tdb-example-")
	if err != nil {
		log.Fatal(err)
	}
	ck, err := gpt2.OpenCheckpoint(golden.ModelDir())
	if err != nil {
		log.Fatal(err)
	}
	dir = filepath.Join(tmp, "model")
	if _, err := export.Write(context.Background(), ck, dir, export.WriteOptions{Name: "test"}); err != nil {
		log.Fatal(err)
	}
	return dir, func() { os.RemoveAll(tmp) }
}

func ExampleTransformer_Sample() {
	dir, cleanup := exportTestModel()
	defer cleanup()
	m, err := modelctx.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()

	// Greedy continuation of a left-padded batch of two prompts.
	res, err := m.Sample(ctx, modelctx.TextPrompts("Hello, my name is", "In 1998 the"),
		modelctx.WithNumTokens(8), modelctx.WithTemperature(0))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n%v\n", res.Strings, res.Tokens[1])

	// The same with neuron 7 of layer 1's MLP set to 0 at every step.
	h := hooks.New()
	h.Add(hooks.MLPPostAct, func(_ *hooks.Context, t *hooks.Tensor) (*hooks.Tensor, error) {
		return t, t.FillTrailing(0, 7)
	}, hooks.AtLayers(1))
	res, err = m.Sample(ctx, modelctx.TextPrompts("Once upon a time"),
		modelctx.WithNumTokens(8), modelctx.WithTemperature(0), modelctx.WithHooks(h))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", res.Strings[0])

	// Nucleus sampling, reproducible with a seed, streamed token by token.
	_, err = m.Sample(ctx, modelctx.TextPrompts("Once upon a time"),
		modelctx.WithNumTokens(4), modelctx.WithTemperature(0.8), modelctx.WithTopP(0.9), modelctx.WithSeed(1),
		modelctx.WithOnToken(func(t modelctx.SampledToken) error {
			fmt.Printf("row %d step %d: %d %q\n", t.Row, t.Step, t.ID, t.Text)
			return nil
		}))
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// [" mimic Theory adjourn LouisianaEnlarge762 heroic lush" " kernel762 consulate Elixir Carnage heroic line aggrav"]
	// [9720 48194 44369 42652 44177 23523 1627 20072]
	// " Limitrelevant whaleikawa senator heroic aggrav decided"
	// row 0 step 0: 1335 "osed"
	// row 0 step 1: 39320 " 318"
	// row 0 step 2: 32141 " viability"
	// row 0 step 3: 18448 " Fail"
}
