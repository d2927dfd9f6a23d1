package sae_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/tlnames"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// A SAELens folder names its site in TransformerLens terms; Bind maps it
// onto the model (blocks.1.hook_resid_pre is TDB's resid.torso.post_mlp@0,
// centred) and SpliceBound splices the SAE in there. With the error term
// and no edit the pass is unchanged.
func ExampleSpliceBound() {
	ctx := context.Background()
	cache, err := os.MkdirTemp("", "sae-saelens-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(cache)

	// A small SAELens SAE: cfg.json and sae_weights.safetensors.
	folder := filepath.Join(cache, "my-sae")
	os.MkdirAll(folder, 0o755)
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "standard", "d_in": 64, "d_sae": 32, "apply_b_dec_to_input": true,
		"metadata": map[string]any{"hook_name": "blocks.1.hook_resid_pre", "sae_lens_training_version": "6.18.0",
			"model_from_pretrained_kwargs": map[string]bool{"center_writing_weights": true}},
	})
	os.WriteFile(filepath.Join(folder, "cfg.json"), cfg, 0o644)
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(math.Sin(float64(i))) / 4
		}
		return v
	}
	var w bytes.Buffer
	safetensors.Write(&w, []safetensors.Tensor{
		safetensors.F32("W_enc", []int{64, 32}, fill(64*32)), safetensors.F32("b_enc", []int{32}, fill(32)),
		safetensors.F32("W_dec", []int{32, 64}, fill(32*64)), safetensors.F32("b_dec", []int{64}, fill(64)),
	}, map[string]string{"format": "pt"})
	os.WriteFile(filepath.Join(folder, "sae_weights.safetensors"), w.Bytes(), 0o644)

	dir, err := export.Resolve(ctx, "../testdata/golden/model", export.ResolveOptions{Fetch: fetch.Options{Dir: cache}})
	if err != nil {
		log.Fatal(err)
	}
	m, err := modelctx.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ae, err := sae.Open(ctx, folder, sae.WithCache(cache))
	if err != nil {
		log.Fatal(err)
	}
	defer ae.Close()

	b, err := sae.Bind(ae, tlnames.ForModel(m).SAEResolver(), m.NLayers())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s reads %s; its sae.* points are at layer %d\n", ae.Site().HookName, b.In, b.Layer)

	rows := [][]int{{464, 2068, 7586, 21831}}
	plain, err := m.Forward(ctx, rows)
	if err != nil {
		log.Fatal(err)
	}
	h := hooks.New()
	defer sae.SpliceBound(h, ae, b, true)()
	active := 0
	h.Observe(hooks.SAE.Latents, func(_ *hooks.Context, z *hooks.Tensor) error {
		for _, v := range z.Data {
			if v > 0 {
				active++
			}
		}
		return nil
	}, hooks.AtLayers(b.Layer))
	spliced, err := m.Forward(ctx, rows, modelctx.WithHooks(h))
	if err != nil {
		log.Fatal(err)
	}
	worst := 0.0
	for i, v := range plain.Logits.Data {
		worst = math.Max(worst, math.Abs(float64(v-spliced.Logits.Data[i])))
	}
	fmt.Println("latents seen:", active > 0)
	fmt.Println("unedited splice leaves the logits:", worst < 1e-4)
	// Output:
	// blocks.1.hook_resid_pre reads resid.torso.post_mlp@0; its sae.* points are at layer 1
	// latents seen: true
	// unedited splice leaves the logits: true
}
