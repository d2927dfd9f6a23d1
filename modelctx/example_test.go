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

// The golden test model: a tiny random GPT-2 in TDB's checkpoint format.
const checkpoint = "../testdata/golden/model"

// This example zeroes one MLP neuron at one layer while reading the
// attention pattern: the seed's headline use.
func ExampleTransformer_Forward() {
	ctx := context.Background()
	cache, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(cache)

	// A checkpoint folder, a name (gpt2-small), a URL or an exported folder.
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

	h := hooks.New()
	remove := h.Add(hooks.MLP.PostAct, func(ctx *hooks.Context, t *hooks.Tensor) (*hooks.Tensor, error) {
		return t, t.FillTrailing(0, 7) // neuron 7, every batch row and token
	}, hooks.AtLayers(1))
	defer remove()

	out, err := m.Forward(ctx, rows,
		modelctx.WithHooks(h),
		modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{hooks.Attn.QKProbs, hooks.MLP.PostAct}, Layers: []int{1}}))
	if err != nil {
		log.Fatal(err)
	}
	post := out.Activations[hooks.Site{Point: hooks.MLP.PostAct, Layer: 1}]
	probs := out.Activations[hooks.Site{Point: hooks.Attn.QKProbs, Layer: 1}]
	fmt.Println("logits", out.Logits.Shape)
	fmt.Println("mlp.post_act@1", post.Shape, "neuron 7 at token 0:", post.At(0, 0, 7))
	fmt.Println("attn.qk_probs@1", probs.Shape)
	out.Release() // the next Forward writes its logits and captures into this memory
	// Output:
	// logits [1 4 50257]
	// mlp.post_act@1 [1 4 256] neuron 7 at token 0: 0
	// attn.qk_probs@1 [1 4 4 4]
}

// Hooks can be registered by dot path, and read-only observers cannot change
// the pass.
func ExampleTransformer_Forward_observe() {
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

	h := hooks.New()
	_, err = h.ObservePath("resid.torso.ln_attn.scale", func(ctx *hooks.Context, t *hooks.Tensor) error {
		fmt.Printf("%s layer %d: %v\n", ctx.Point(), ctx.Layer(), t.Shape)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := m.Forward(ctx, [][]int{{464, 2068}, {464}}, modelctx.WithHooks(h)); err != nil {
		log.Fatal(err)
	}
	// Output:
	// resid.torso.ln_attn.scale layer 0: [2 2 1]
	// resid.torso.ln_attn.scale layer 1: [2 2 1]
}

// A hook at mlp.post_act finds the layer's MLP output projection, the
// original's out_layer kwarg: here it writes out one neuron's contribution to
// the residual stream.
func ExampleOutLayer() {
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

	h := hooks.New()
	h.Observe(hooks.MLP.PostAct, func(hc *hooks.Context, t *hooks.Tensor) error {
		v, ok := hc.Value(modelctx.OutLayerKey)
		if !ok {
			return fmt.Errorf("no out layer at %s", hc.Site)
		}
		out := v.(*modelctx.OutLayer)
		// Neuron 7 alone: zero every other entry, then project.
		only := hooks.Zeros(t.Shape...)
		for i := 7; i < len(t.Data); i += t.Shape[2] {
			only.Data[i] = t.Data[i]
		}
		delta, err := out.Apply(only)
		if err != nil {
			return err
		}
		fmt.Printf("layer %d: out layer %v, neuron 7 writes %v into the residual stream\n", hc.Layer(), out.Weight.Shape, delta.Shape)
		return nil
	}, hooks.AtLayers(1))
	if _, err := m.Forward(ctx, [][]int{{464, 2068, 7586}}, modelctx.WithHooks(h)); err != nil {
		log.Fatal(err)
	}
	// Output:
	// layer 1: out layer [64 256], neuron 7 writes [1 3 64] into the residual stream
}
