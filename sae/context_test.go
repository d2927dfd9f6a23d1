package sae

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

func TestDeadLatentTrimming(t *testing.T) {
	ctx := context.Background()
	src, cache := t.TempDir(), t.TempDir()
	topk := Activation{Name: TopK, K: 4, PostAct: Identity}
	p0 := randomSAE{nLatents: 64, nInputs: 16, act: topk, freq: withDead(64, 5), seed: 1}.save(t, src, "0.pt")
	p2 := randomSAE{nLatents: 64, nInputs: 16, act: topk, freq: withDead(64, 3), seed: 2}.save(t, src, "2.pt")
	cfg := Config{Input: ResidDeltaMLP, Paths: map[int]string{0: p0, 2: p2}}

	c, err := NewAutoencoderContext(cfg, WithCache(cache), OmitDeadLatents())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.NumDirections(); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("NumDirections before loading: %v, want ErrNotLoaded", err)
	}
	if _, err := c.Get(ctx, 1); !errors.Is(err, ErrNoLayer) {
		t.Errorf("Get(1): %v, want ErrNoLayer", err)
	}
	if err := c.Warmup(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c.NumDirections(); err != nil || n != 61 {
		t.Fatalf("NumDirections after warmup: %d, %v; want 61 (64 - min(5, 3) dead)", n, err)
	}
	if fmt.Sprint(c.Layers()) != "[0 2]" || c.NodeType() != MLPAutoencoderLatent || c.Input() != ResidDeltaMLP {
		t.Errorf("layers %v, node type %s, input %s", c.Layers(), c.NodeType(), c.Input())
	}
	x := randomInput(5, 16, 4)
	for layer, path := range cfg.Paths {
		trimmed, err := c.Get(ctx, layer)
		if err != nil {
			t.Fatal(err)
		}
		full, err := Load(path, WithCache(cache))
		if err != nil {
			t.Fatal(err)
		}
		defer full.Close()
		if trimmed.NLatents != 61 || trimmed.Activation != topk {
			t.Errorf("layer %d trimmed to %d latents, %s; want 61, %s", layer, trimmed.NLatents, trimmed.Activation, topk)
		}
		// pre_bias is kept (the original leaves it at zero), so the kept
		// pre-activations are exactly the full autoencoder's first 61.
		for _, key := range []string{keyPreBias} {
			a, _, _ := full.Tensor(key)
			b, _, _ := trimmed.Tensor(key)
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("layer %d: %s changed by trimming", layer, key)
			}
		}
		fullPre, _ := full.EncodePreAct(ctx, x, nil)
		keptPre, err := trimmed.EncodePreAct(ctx, x, nil)
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r < 5; r++ {
			want, got := fullPre.Data[r*64:r*64+61], keptPre.Data[r*61:(r+1)*61]
			if _, fail := golden.Diff(got, want, 1e-5); fail != "" {
				t.Fatalf("layer %d row %d pre-activations: %s", layer, r, fail)
			}
		}
		fullDec, _, _ := full.Tensor(keyDecoder)
		dec, shape, _ := trimmed.Tensor(keyDecoder)
		if fmt.Sprint(shape) != "[16 61]" || dec[61] != fullDec[64] || dec[60] != fullDec[60] {
			t.Errorf("layer %d: trimmed decoder %v does not keep the first 61 columns", layer, shape)
		}
		// Layer 0's dead latents were 59..63: 59 and 60 remain.
		if dead, err := trimmed.DeadLatents(); err != nil || dead != map[int]int{0: 2, 2: 0}[layer] {
			t.Errorf("layer %d: %d dead after trimming, %v", layer, dead, err)
		}
	}

	// Without OmitDeadLatents nothing is trimmed.
	plain, err := NewAutoencoderContext(cfg, WithCache(cache))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Warmup(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := plain.NumDirections(); n != 64 {
		t.Errorf("untrimmed context has %d directions, want 64", n)
	}
}

func TestDeadLatentsErrors(t *testing.T) {
	ae, err := LoadStateDict(randomSAE{nLatents: 8, nInputs: 4, freq: make([]float32, 8)}.stateDict())
	if err != nil {
		t.Fatal(err)
	}
	defer ae.Close()
	if _, err := ae.DeadLatents(); !errors.Is(err, ErrNoFrequencies) {
		t.Errorf("all-zero frequencies: %v, want ErrNoFrequencies", err)
	}
	for _, keep := range []int{0, 9, -1} {
		if _, err := ae.Trim(keep); !errors.Is(err, ErrTrim) {
			t.Errorf("Trim(%d): %v, want ErrTrim", keep, err)
		}
	}
	same, err := ae.Trim(8)
	if err != nil {
		t.Fatal(err)
	}
	same.Close()
	small, err := ae.Trim(3)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if small.NLatents != 3 {
		t.Errorf("Trim(3) has %d latents", small.NLatents)
	}
	topk, err := LoadStateDict(randomSAE{nLatents: 8, nInputs: 4, act: Activation{Name: TopK, K: 4, PostAct: ReLU}}.stateDict())
	if err != nil {
		t.Fatal(err)
	}
	defer topk.Close()
	if _, err := topk.Trim(3); !errors.Is(err, ErrTrim) {
		t.Errorf("TopK k=4 trimmed to 3: %v, want ErrTrim", err)
	}
}

func TestContextConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Input: MLPPostAct},
		{Input: "mlp_pre_act", Paths: map[int]string{0: "x.pt"}},
		{Input: MLPPostAct, Paths: map[int]string{-1: "x.pt"}},
		{Input: MLPPostAct, Paths: map[int]string{0: ""}},
	} {
		if _, err := NewAutoencoderContext(cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", cfg, err)
		}
	}
}

func TestMultiAutoencoderContext(t *testing.T) {
	mlp, _ := NewAutoencoderContext(Config{Input: MLPPostAct, Paths: map[int]string{0: "a.pt"}})
	mlp2, _ := NewAutoencoderContext(Config{Input: ResidDeltaMLP, Paths: map[int]string{0: "b.pt"}})
	attn, _ := NewAutoencoderContext(Config{Input: ResidDeltaAttn, Paths: map[int]string{0: "c.pt"}})
	if _, err := NewMultiAutoencoderContext(mlp, mlp2); !errors.Is(err, ErrDuplicateNodeType) {
		t.Errorf("two MLP contexts: %v, want ErrDuplicateNodeType", err)
	}
	m, err := NewMultiAutoencoderContext(mlp, attn)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.Context(AttentionAutoencoderLatent); got != attn || err != nil {
		t.Errorf("attention lookup: %v, %v", got, err)
	}
	if got, err := m.Context(MLPAutoencoderLatent); got != mlp || err != nil {
		t.Errorf("MLP lookup: %v, %v", got, err)
	}
	if m.HasSingle() {
		t.Error("two contexts reported as single")
	}
	if _, err := m.Context(AutoencoderLatent); !errors.Is(err, ErrNoContext) {
		t.Errorf("generic lookup with two contexts: %v, want ErrNoContext", err)
	}
	one, _ := NewMultiAutoencoderContext(attn)
	if got, err := one.Context(""); got != attn || err != nil || !one.HasSingle() {
		t.Errorf("single context: %v, %v", got, err)
	}
	if _, err := one.Context(MLPAutoencoderLatent); !errors.Is(err, ErrNoContext) {
		t.Errorf("missing node type: %v, want ErrNoContext", err)
	}
	if _, err := one.Get(context.Background(), 3, AttentionAutoencoderLatent); !errors.Is(err, ErrNoLayer) {
		t.Errorf("missing layer: %v, want ErrNoLayer", err)
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
}

// TestContextSplice splices a context's autoencoders into a pass: the
// golden no-error intervention.
func TestContextSplice(t *testing.T) {
	c := golden.Load(t)
	m := openModel(t)
	info := c.SAEs["mlp_post_act"]
	ctxSAE, err := NewAutoencoderContext(Config{Input: MLPPostAct, Paths: map[int]string{info.Layer: filepath.Join(golden.Dir(), info.File)}}, WithCache(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	multi, err := NewMultiAutoencoderContext(ctxSAE)
	if err != nil {
		t.Fatal(err)
	}
	defer multi.Close()
	if err := multi.Warmup(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := hooks.New()
	remove, err := multi.Splice(context.Background(), h, false)
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	in := c.Input("batch_right")
	out, err := m.Forward(context.Background(), in.Rows, modelctx.WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	for _, iv := range in.Interventions {
		if iv.Name == "sae_mlp_post_act_no_error" {
			golden.Check(t, iv.Name, lastLogits(out.Logits, in.LastRealPosition), iv.LogitsLast)
			return
		}
	}
	t.Fatal("golden intervention sae_mlp_post_act_no_error missing")
}
