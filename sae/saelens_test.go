package sae

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// tinySAELens is a small SAELens SAE written by the tests.
type tinySAELens struct {
	cfg     map[string]any
	tensors map[string][]int // name -> shape; filled with seeded values
	seed    uint64
}

func standardTiny(n, N int) tinySAELens {
	return tinySAELens{
		cfg: map[string]any{
			"architecture": "standard", "d_in": n, "d_sae": N, "dtype": "float32",
			"apply_b_dec_to_input": true, "normalize_activations": "none",
			"metadata": map[string]any{"hook_name": "blocks.0.hook_mlp_out", "sae_lens_training_version": "6.0.0"},
		},
		tensors: map[string][]int{"W_enc": {n, N}, "b_enc": {N}, "W_dec": {N, n}, "b_dec": {n}},
		seed:    1,
	}
}

func (s tinySAELens) weightBytes(t testing.TB) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(s.seed, 7))
	var ts []safetensors.Tensor
	for name, shape := range s.tensors {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64()) * 0.3
		}
		ts = append(ts, safetensors.F32(name, shape, v))
	}
	var b bytes.Buffer
	if err := safetensors.Write(&b, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (s tinySAELens) write(t testing.TB, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, saelensCfgName), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, saelensWeightsName), s.weightBytes(t), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSAELensBadInput(t *testing.T) {
	base := standardTiny(6, 10)
	for _, c := range []struct {
		name string
		edit func(s *tinySAELens)
		want error
		text string
	}{
		{"unknown architecture", func(s *tinySAELens) { s.cfg["architecture"] = "spiky" }, ErrUnknownFamily, "spiky"},
		{"unknown normalisation", func(s *tinySAELens) { s.cfg["normalize_activations"] = "z_score" }, ErrUnknownNorm, "z_score"},
		{"shape disagrees", func(s *tinySAELens) { s.tensors["W_enc"] = []int{6, 11} }, ErrShape, "W_enc"},
		{"missing tensor", func(s *tinySAELens) { delete(s.tensors, "b_enc") }, ErrBadSAELensFolder, "b_enc"},
		{"topk without k", func(s *tinySAELens) { s.cfg["architecture"] = "topk" }, ErrBadCfg, "k=0"},
		{"transcoder without output", func(s *tinySAELens) { s.cfg["architecture"] = "transcoder" }, ErrBadCfg, "hook_name_out"},
		{"bad dtype", func(s *tinySAELens) { s.cfg["dtype"] = "int8" }, ErrBadCfg, "int8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := standardTiny(6, 10)
			s.cfg = map[string]any{}
			for k, v := range base.cfg {
				s.cfg[k] = v
			}
			s.tensors = map[string][]int{}
			for k, v := range base.tensors {
				s.tensors[k] = v
			}
			c.edit(&s)
			dir := s.write(t, filepath.Join(t.TempDir(), "sae"))
			cache := t.TempDir()
			_, err := Open(context.Background(), dir, WithCache(cache))
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("got %v, want %v naming %q", err, c.want, c.text)
			}
			if left, _ := filepath.Glob(filepath.Join(cache, "sae", "saelens", "*")); len(left) != 0 {
				t.Errorf("a failed load left %v in the cache", left)
			}
		})
	}
}

func TestSAELensLyingHeader(t *testing.T) {
	s := standardTiny(6, 10)
	dir := s.write(t, filepath.Join(t.TempDir(), "sae"))
	p := filepath.Join(dir, saelensWeightsName)
	b, _ := os.ReadFile(p)
	// Claim more data than the file holds: cut its tail off.
	if err := os.WriteFile(p, b[:len(b)-16], 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := Open(context.Background(), dir, WithCache(cache)); !errors.Is(err, ErrBadSAELensFolder) {
		t.Fatalf("truncated data: %v, want ErrBadSAELensFolder", err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "sae", "saelens", "*")); len(left) != 0 {
		t.Errorf("a failed load left %v in the cache", left)
	}
}

// TestSAELensPre6Cfg reads the pre-6 flat forms: hook_point, activation_fn
// topk with activation_fn_kwargs, a boolean normalize_activations, a torch
// dtype.
func TestSAELensPre6Cfg(t *testing.T) {
	c, err := parseSAELensCfg([]byte(`{"d_in": 8, "d_sae": 16, "hook_point": "blocks.2.hook_resid_pre", "activation_fn": "topk",
		"activation_fn_kwargs": {"k": 3}, "normalize_activations": true, "dtype": "torch.float32"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Architecture != FamilyTopK || c.K != 3 || c.Norm != NormExpectedAverageOnlyIn || c.Site.HookName != "blocks.2.hook_resid_pre" || c.Site.Layer != 2 || !c.ApplyBDec {
		t.Errorf("pre-6 cfg read as %+v", c)
	}
	if c.Site.Processing != DefaultProcessing {
		t.Errorf("no training version: processing %+v, want TL's defaults", c.Site.Processing)
	}
	c, err = parseSAELensCfg([]byte(`{"d_in": 8, "d_sae": 16, "architecture": "batchtopk", "hook_name": "blocks.0.attn.hook_z",
		"sae_lens_training_version": "3.19.2", "model_from_pretrained_kwargs": {"center_writing_weights": false, "fold_ln": true}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Architecture != FamilyJumpReLU || c.Site.Reshape != "hook_z" || c.Site.Processing != (Processing{FoldLN: true}) {
		t.Errorf("3.19.2 batchtopk read as %+v", c)
	}
}

func TestVersionBefore(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{{"3.19.1", true}, {"3.19.2", false}, {"3.9.9", true}, {"6.18.0", false}, {"2.1.3", true}, {"3.19.2rc1", false}, {"v4.0.0", false}} {
		if got := versionBefore(c.v, [3]int{3, 19, 2}); got != c.want {
			t.Errorf("versionBefore(%s) = %v", c.v, got)
		}
	}
}

// TestSAELensSparsity counts latents with log10 density at or below -8.
func TestSAELensSparsity(t *testing.T) {
	s := standardTiny(4, 6)
	dir := s.write(t, filepath.Join(t.TempDir(), "sae"))
	var b bytes.Buffer
	safetensors.Write(&b, []safetensors.Tensor{safetensors.F32("sparsity", []int{6}, []float32{-2, -8, -7.9, -10, -3, -8.5})}, nil)
	os.WriteFile(filepath.Join(dir, saelensSparsityName), b.Bytes(), 0o644)
	ae, err := Open(context.Background(), dir, WithCache(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer ae.Close()
	if n, err := ae.DeadLatents(); err != nil || n != 3 {
		t.Errorf("dead latents %d, %v; want 3", n, err)
	}
}

// TestSAELensNormGradients checks EncodeVJP, DecodeVJPAt and InputVJP of
// normalised SAEs against finite differences.
func TestSAELensNormGradients(t *testing.T) {
	for _, norm := range []string{NormLayerNorm, NormConstantNormRescale} {
		t.Run(norm, func(t *testing.T) {
			s := standardTiny(5, 7)
			s.cfg["normalize_activations"] = norm
			s.cfg["architecture"] = "jumprelu"
			s.tensors["threshold"] = []int{7}
			dir := s.write(t, filepath.Join(t.TempDir(), "sae"))
			ae, err := Open(context.Background(), dir, WithCache(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer ae.Close()
			ctx := context.Background()
			x := randomInput(3, 5, 11)
			for i := range x.Data {
				x.Data[i] += 0.5
			}
			// loss(x) = Σ w · DecodeFrom(Encode(x), x), with the
			// latents' mask held (a JumpReLU is piecewise linear).
			w := randomInput(3, 5, 12)
			loss := func(x *hooks.Tensor) float64 {
				z, err := ae.Encode(ctx, x)
				if err != nil {
					t.Fatal(err)
				}
				y, err := ae.DecodeFrom(ctx, z, x)
				if err != nil {
					t.Fatal(err)
				}
				var l float64
				for i := range y.Data {
					l += float64(w.Data[i]) * float64(y.Data[i])
				}
				return l
			}
			z, _ := ae.Encode(ctx, x)
			gz, err := ae.DecodeVJPAt(ctx, x, w)
			if err != nil {
				t.Fatal(err)
			}
			gx, err := ae.EncodeVJP(ctx, x, gz)
			if err != nil {
				t.Fatal(err)
			}
			in, err := ae.InputVJP(ctx, x, z, w)
			if err != nil {
				t.Fatal(err)
			}
			for i := range gx.Data {
				gx.Data[i] += in.Data[i]
			}
			const h = 1e-3
			for i := range x.Data {
				xp, xm := x.Clone(), x.Clone()
				xp.Data[i] += h
				xm.Data[i] -= h
				fd := (loss(xp) - loss(xm)) / (2 * h)
				if d := fd - float64(gx.Data[i]); d > 2e-2 || d < -2e-2 {
					t.Errorf("d/dx[%d]: vjp %.5f, finite difference %.5f", i, gx.Data[i], fd)
				}
			}
		})
	}
}
