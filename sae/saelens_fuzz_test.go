package sae

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzSAELensCfg feeds cfg.json bytes to the parser: it must return a
// config or an error, never panic, and a config it accepts is sound.
func FuzzSAELensCfg(f *testing.F) {
	f.Add([]byte(`{"d_in": 8, "d_sae": 16, "architecture": "standard", "metadata": {"hook_name": "blocks.1.hook_resid_pre"}}`))
	f.Add([]byte(`{"d_in": 8, "d_sae": 16, "hook_point": "blocks.2.hook_resid_pre", "activation_fn": "topk", "activation_fn_kwargs": {"k": 3}, "normalize_activations": true}`))
	f.Add([]byte(`{"d_in": 8, "d_sae": 16, "d_out": 4, "architecture": "skip_transcoder", "hook_name": "a", "hook_name_out": "b", "sae_lens_training_version": "3.1"}`))
	f.Add([]byte(`{"d_in": -1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"metadata": 3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseSAELensCfg(b)
		if err != nil {
			return
		}
		if c.DIn <= 0 || c.DSAE <= 0 || c.DOut <= 0 {
			t.Errorf("accepted sizes d_in %d d_sae %d d_out %d", c.DIn, c.DSAE, c.DOut)
		}
		if c.Architecture == FamilyTopK && (c.K <= 0 || c.K > c.DSAE) {
			t.Errorf("accepted topk k=%d of %d", c.K, c.DSAE)
		}
	})
}

// FuzzSAELensFolder feeds sae_weights.safetensors bytes to the folder
// reader (with a fixed, valid cfg.json): it must load or fail cleanly,
// leaving nothing in the cache when it fails.
func FuzzSAELensFolder(f *testing.F) {
	s := standardTiny(3, 4)
	f.Add(s.weightBytes(f))
	f.Add([]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '})
	f.Add([]byte(`garbage`))
	b := s.weightBytes(f)
	f.Add(b[:len(b)/2])
	f.Fuzz(func(t *testing.T, weights []byte) {
		dir := filepath.Join(t.TempDir(), "sae")
		s.write(t, dir)
		if err := os.WriteFile(filepath.Join(dir, saelensWeightsName), weights, 0o644); err != nil {
			t.Fatal(err)
		}
		cache := t.TempDir()
		ae, err := Open(context.Background(), dir, WithCache(cache))
		if err != nil {
			if left, _ := filepath.Glob(filepath.Join(cache, "sae", "saelens", "*")); len(left) != 0 {
				t.Errorf("a failed load left %v", left)
			}
			return
		}
		ae.Close()
	})
}
