package gpt2

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
)

// Random is a Source of random GPT-2 weights with GPT-2's initialisation
// (normal, std 0.02; LayerNorm gains 1 and biases 0; linear biases 0),
// deterministic for a seed. Performance does not depend on weight values, so
// benchmarks use a GPT-2-small-shaped instance of it.
type Random struct {
	Config Config
	Seed   uint64
}

// Small is the shape of GPT-2 small.
var Small = Config{NLayers: 12, DModel: 768, NHeads: 12, DHead: 64, DFF: 3072, NVocab: 50257, NCtx: 1024}

// Architecture implements export.Source.
func (r Random) Architecture() string { return Name }

// Build implements export.Source.
func (r Random) Build(ctx context.Context, b *export.Builder) error {
	return build(ctx, b, r.Config, r.Tensor, sourceInfo{Format: "random", Seed: r.Seed})
}

// Describe implements export.Source.
func (r Random) Describe() string {
	return fmt.Sprintf("random gpt2 (seed %d, %d layers, d_model %d)", r.Seed, r.Config.NLayers, r.Config.DModel)
}

// Shape returns the state-dict shape of a key.
func (r Random) Shape(key string) ([]int, error) { return StateDictShape(r.Config, key) }

// Tensor implements Source.
func (r Random) Tensor(key string) ([]float32, []int, error) {
	shape, err := r.Shape(key)
	if err != nil {
		return nil, nil, err
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	switch {
	case strings.HasSuffix(key, "ln_1.weight"), strings.HasSuffix(key, "ln_2.weight"), key == "final_ln.weight":
		for i := range v {
			v[i] = 1
		}
	case strings.HasSuffix(key, ".bias"):
	default:
		var h uint64 = 1469598103934665603
		for _, c := range key {
			h = (h ^ uint64(c)) * 1099511628211
		}
		rng := rand.New(rand.NewPCG(r.Seed, h))
		for i := 0; i+1 < n; i += 2 {
			// Box-Muller, two values per draw.
			u1, u2 := 1-rng.Float64(), rng.Float64()
			m := 0.02 * math.Sqrt(-2*math.Log(u1))
			v[i] = float32(m * math.Cos(2*math.Pi*u2))
			v[i+1] = float32(m * math.Sin(2*math.Pi*u2))
		}
		if n%2 == 1 {
			v[n-1] = float32(0.02 * rng.NormFloat64())
		}
	}
	return v, shape, nil
}

// Keys lists the state-dict keys of a GPT-2 checkpoint (docs/behaviour.md §1.2).
func Keys(c Config) []string {
	var keys []string
	seen := map[string]bool{}
	for _, w := range WeightSpecs(c) {
		if !seen[w.Source] {
			seen[w.Source] = true
			keys = append(keys, w.Source)
		}
	}
	return keys
}

// StateDictShape is the shape a GPT-2 state-dict key has under a config
// (docs/behaviour.md §1.2); unknown keys are an error.
func StateDictShape(c Config, key string) ([]int, error) {
	D, F, V, Ctx := c.DModel, c.DFF, c.NVocab, c.NCtx
	switch key {
	case "tok_embed.weight", "unembed.weight":
		return []int{V, D}, nil
	case "pos_embed.weight":
		return []int{Ctx, D}, nil
	case "final_ln.weight", "final_ln.bias":
		return []int{D}, nil
	}
	var l int
	if _, err := fmt.Sscanf(key, "xf_layers.%d.", &l); err != nil || l < 0 || l >= c.NLayers {
		return nil, fmt.Errorf("%w: unknown state-dict key %s", export.ErrCheckpoint, key)
	}
	switch strings.TrimPrefix(key, fmt.Sprintf("xf_layers.%d.", l)) {
	case "attn.q_proj.weight", "attn.k_proj.weight", "attn.v_proj.weight", "attn.out_proj.weight":
		return []int{D, D}, nil
	case "attn.q_proj.bias", "attn.k_proj.bias", "attn.v_proj.bias", "attn.out_proj.bias",
		"ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.out_layer.bias":
		return []int{D}, nil
	case "mlp.in_layer.weight":
		return []int{F, D}, nil
	case "mlp.in_layer.bias":
		return []int{F}, nil
	case "mlp.out_layer.weight":
		return []int{D, F}, nil
	}
	return nil, fmt.Errorf("%w: unknown state-dict key %s", export.ErrCheckpoint, key)
}

// Shapes are the shapes of the four GPT-2 sizes (docs/behaviour.md §1.1).
var Shapes = map[string]Config{
	"small":  Small,
	"medium": {NLayers: 24, DModel: 1024, NHeads: 16, DHead: 64, DFF: 4096, NVocab: 50257, NCtx: 1024},
	"large":  {NLayers: 36, DModel: 1280, NHeads: 20, DHead: 64, DFF: 5120, NVocab: 50257, NCtx: 1024},
	"xl":     {NLayers: 48, DModel: 1600, NHeads: 25, DHead: 64, DFF: 6400, NVocab: 50257, NCtx: 1024},
}

// WriteRandomCheckpoint writes a TDB checkpoint folder (config.json and one
// torch.save file per state-dict key) with the source's weights, all at
// once: into a temporary sibling renamed into place when complete, so an
// interrupted or failed write leaves nothing under dir.
func WriteRandomCheckpoint(ctx context.Context, dir string, r Random) error {
	c := r.Config
	if err := c.Validate(); err != nil {
		return err
	}
	return atomicdir.Write(dir, func(tmp string) error {
		if err := os.MkdirAll(filepath.Join(tmp, "model_pieces"), 0o755); err != nil {
			return err
		}
		cfg := TDBConfig{Enc: "gpt2", CtxWindow: c.NCtx, DModel: c.DModel, NLayers: c.NLayers, MAttn: 1, NHeads: c.NHeads, MMLP: float64(c.DFF) / float64(c.DModel)}
		js, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "config.json"), append(js, '\n'), 0o644); err != nil {
			return err
		}
		for _, k := range Keys(c) {
			if err := ctx.Err(); err != nil {
				return err
			}
			data, shape, err := r.Tensor(k)
			if err != nil {
				return err
			}
			if err := torchpt.Save(filepath.Join(tmp, "model_pieces", k+".pt"), &torchpt.Tensor{DType: "float32", Shape: shape, F32: data}); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}
