package sae_test

import (
	"context"
	"fmt"
	"log"
	"math"
	"os"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/bpe"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// The seed's autoencoder example: run the model, cache the autoencoder's
// input (mlp.post_act at one layer), encode it into latents and decode them
// back. With gpt2-small, use --model gpt2-small and the autoencoder
// az://openaipublic/sparse-autoencoder/gpt2-small/mlp_post_act/autoencoders/5.pt
// (or sae.Resolve("ae-mlp-post-act-v1", 5)); here the test model and its
// test SAE at layer 1.
func Example() {
	ctx := context.Background()
	cache, err := os.MkdirTemp("", "sae-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(cache)

	dir, err := export.Resolve(ctx, "../testdata/golden/model", export.ResolveOptions{Fetch: fetch.Options{Dir: cache}})
	if err != nil {
		log.Fatal(err)
	}
	m, err := modelctx.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	// Run the transformer and cache the activations at the autoencoder's input.
	const layer = 1
	tok, err := bpe.GPT2()
	if err != nil {
		log.Fatal(err)
	}
	tokens := tok.Encode("This is an example of a prompt that")
	site := hooks.Site{Point: hooks.MLP.PostAct, Layer: layer}
	out, err := m.Forward(ctx, [][]int{tokens},
		modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{site.Point}, Layers: []int{layer}}))
	if err != nil {
		log.Fatal(err)
	}
	input := out.Activations[site] // [1, tokens, d_ff]

	// Load the autoencoder (converted once into the cache) and encode.
	ae, err := sae.Load("../testdata/golden/sae/mlp_post_act.layer1.pt", sae.WithCache(cache))
	if err != nil {
		log.Fatal(err)
	}
	defer ae.Close()
	latents, err := ae.Encode(ctx, input) // [1, tokens, n_latents]
	if err != nil {
		log.Fatal(err)
	}
	reconstructed, err := ae.Decode(ctx, latents) // [1, tokens, n_inputs]
	if err != nil {
		log.Fatal(err)
	}

	// Normalised MSE of the reconstruction, over all tokens.
	var se, ss float64
	for i, x := range input.Data {
		d := float64(reconstructed.Data[i] - x)
		se += d * d
		ss += float64(x) * float64(x)
	}
	fmt.Println("input", input.Shape, "latents", latents.Shape, "reconstruction", reconstructed.Shape)
	fmt.Println("activation:", ae.Activation)
	fmt.Printf("normalised MSE %.2f (random weights: the test SAE is untrained)\n", se/ss)
	// Output:
	// input [1 8 256] latents [1 8 512] reconstruction [1 8 256]
	// activation: ReLU
	// normalised MSE 1.82 (random weights: the test SAE is untrained)
}

// Splice an autoencoder into the forward pass and zero one latent: with
// add_error the unedited splice leaves the pass as it was, and the latent
// edit changes it (the CLI's --sae mlp.post_act@1=FILE --ablate
// sae.latents@1:301).
func ExampleSplice() {
	ctx := context.Background()
	cache, err := os.MkdirTemp("", "sae-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(cache)
	dir, err := export.Resolve(ctx, "../testdata/golden/model", export.ResolveOptions{Fetch: fetch.Options{Dir: cache}})
	if err != nil {
		log.Fatal(err)
	}
	m, err := modelctx.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ae, err := sae.Load("../testdata/golden/sae/mlp_post_act.layer1.pt", sae.WithCache(cache))
	if err != nil {
		log.Fatal(err)
	}
	defer ae.Close()

	rows := [][]int{{464, 2068, 7586, 21831}}
	plain, err := m.Forward(ctx, rows)
	if err != nil {
		log.Fatal(err)
	}
	h := hooks.New()
	defer sae.Splice(h, ae, hooks.Site{Point: hooks.MLP.PostAct, Layer: 1}, true)()
	spliced, err := m.Forward(ctx, rows, modelctx.WithHooks(h))
	if err != nil {
		log.Fatal(err)
	}
	h.Add(hooks.SAE.Latents, func(_ *hooks.Context, z *hooks.Tensor) (*hooks.Tensor, error) {
		return z, z.FillTrailing(0, 301) // z is [batch, tokens, n_latents]
	}, hooks.AtLayers(1))
	ablated, err := m.Forward(ctx, rows, modelctx.WithHooks(h))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("splice with add_error changes the logits:", maxDiff(plain.Logits.Data, spliced.Logits.Data) > 1e-4)
	fmt.Println("ablating latent 301 changes the logits:", maxDiff(plain.Logits.Data, ablated.Logits.Data) > 1e-4)
	// Output:
	// splice with add_error changes the logits: false
	// ablating latent 301 changes the logits: true
}

// The gradient flows through a splice: the backward pass reports it at the
// sae.* points, and a gradient hook there can edit it (the CLI's grad --sae
// ... --points sae.latents --ablate-grad sae.latents@1).
func ExampleSplice_gradient() {
	ctx := context.Background()
	cache, err := os.MkdirTemp("", "sae-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(cache)
	dir, err := export.Resolve(ctx, "../testdata/golden/model", export.ResolveOptions{Fetch: fetch.Options{Dir: cache}})
	if err != nil {
		log.Fatal(err)
	}
	m, err := modelctx.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ae, err := sae.Load("../testdata/golden/sae/mlp_post_act.layer1.pt", sae.WithCache(cache))
	if err != nil {
		log.Fatal(err)
	}
	defer ae.Close()

	h := hooks.New()
	defer sae.Splice(h, ae, hooks.Site{Point: hooks.MLP.PostAct, Layer: 1}, false)()
	g, err := m.Backward(ctx, [][]int{{464, 2068, 7586, 21831}}, modelctx.LogitLoss(0, -1, 11), modelctx.WithHooks(h))
	if err != nil {
		log.Fatal(err)
	}
	lat := g.Grads[hooks.Site{Point: hooks.SAE.Latents, Layer: 1}]
	fmt.Println("d(logit)/d(sae.latents@1):", lat.Shape)
	// Output:
	// d(logit)/d(sae.latents@1): [1 4 512]
}

func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}
