package gpt2_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"
	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// hfVariant rewrites the golden Hugging Face GPT-2 folder: rename maps each
// tensor name (return "" to drop it), dtype is F32, F16 or BF16, shards
// splits the tensors over that many files with an index.
func hfVariant(t *testing.T, rename func(string) string, dtype string, shards int) string {
	t.Helper()
	src := filepath.Join(golden.RequireShared(t, "hf"), "gpt2")
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	var ts []safetensors.Tensor
	for _, name := range set.Names() {
		to := rename(name)
		if to == "" {
			continue
		}
		v, shape, err := set.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, encode(to, shape, v, dtype))
	}
	if dtype == "F32+buffers" {
		ts = append(ts, safetensors.F32("transformer.h.0.attn.bias", []int{1, 1, 2, 2}, []float32{1, 0, 1, 1}),
			safetensors.F32("transformer.h.0.attn.masked_bias", nil, []float32{-1e4}))
	}
	if shards <= 1 {
		writeST(t, filepath.Join(dir, safetensors.SingleFile), ts)
		return dir
	}
	index := map[string]any{"metadata": map[string]any{}, "weight_map": map[string]string{}}
	for s := 0; s < shards; s++ {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		var part []safetensors.Tensor
		for i := s; i < len(ts); i += shards {
			part = append(part, ts[i])
			index["weight_map"].(map[string]string)[ts[i].Name] = file
		}
		writeST(t, filepath.Join(dir, file), part)
	}
	js, _ := json.Marshal(index)
	os.WriteFile(filepath.Join(dir, safetensors.IndexFile), js, 0o644)
	return dir
}

func writeST(t *testing.T, path string, ts []safetensors.Tensor) {
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// encode stores v as dtype; the reader widens it back exactly (F16/BF16
// values are rounded here, so the test compares against the rounded value).
func encode(name string, shape []int, v []float32, dtype string) safetensors.Tensor {
	switch dtype {
	case "F32+buffers":
		return safetensors.F32(name, shape, v)
	case "BF16":
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(math.Float32bits(x)>>16))
		}
		return safetensors.Tensor{Name: name, DType: dtype, Shape: shape, Data: b}
	case "F16":
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], toHalf(x))
		}
		return safetensors.Tensor{Name: name, DType: dtype, Shape: shape, Data: b}
	}
	return safetensors.F32(name, shape, v)
}

// toHalf truncates a float32 to binary16 (normal range only, enough for
// weights of magnitude 1e-4..10).
func toHalf(x float32) uint16 {
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	return sign | uint16(exp)<<10 | uint16(b>>13&0x3ff)
}

func roundTo(dtype string, x float32) float32 {
	switch dtype {
	case "F32+buffers":
		return x
	case "BF16":
		return math.Float32frombits(math.Float32bits(x) &^ 0xffff)
	case "F16":
		return safetensors.HalfToFloat32(toHalf(x))
	}
	return x
}

// TestHFFolderServesTDBWeights checks that every TDB state-dict tensor read
// from a Hugging Face GPT-2 folder equals the golden TDB checkpoint's, in
// the layouts the issue lists: names with and without the transformer.
// prefix, shards with an index, float16 and bfloat16, and a tied
// unembedding (no lm_head.weight, which the golden model does not tie: the
// test then expects wte).
func TestHFFolderServesTDBWeights(t *testing.T) {
	ck, err := gpt2.OpenCheckpoint(golden.ModelDir())
	if err != nil {
		t.Fatal(err)
	}
	same := func(n string) string { return n }
	noPrefix := func(n string) string {
		if n == "lm_head.weight" {
			return n
		}
		return strings.TrimPrefix(n, "transformer.")
	}
	tied := func(n string) string {
		if n == "lm_head.weight" {
			return ""
		}
		return n
	}
	for _, tc := range []struct {
		name   string
		rename func(string) string
		dtype  string
		shards int
	}{
		{"as saved", same, "F32", 1},
		{"no transformer. prefix", noPrefix, "F32", 1},
		{"three shards", same, "F32", 3},
		{"float16", same, "F16", 1},
		{"bfloat16 sharded without prefix", noPrefix, "BF16", 2},
		{"tied unembedding", tied, "F32", 1},
		{"attention buffers ignored", same, "F32+buffers", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := hfVariant(t, tc.rename, tc.dtype, tc.shards)
			src, err := export.OpenSource(dir)
			if err != nil {
				t.Fatal(err)
			}
			hf, ok := src.(*gpt2.HF)
			if !ok {
				t.Fatalf("opened as %T", src)
			}
			defer hf.Close()
			for _, k := range gpt2.Keys(ck.Dims()) {
				want, _, err := ck.Tensor(k)
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "tied unembedding" && k == "unembed.weight" {
					want, _, _ = ck.Tensor("tok_embed.weight")
				}
				got, _, err := hf.Tensor(k)
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if got[i] != roundTo(tc.dtype, want[i]) {
						t.Fatalf("%s[%d] = %v, want %v", k, i, got[i], roundTo(tc.dtype, want[i]))
					}
				}
			}
		})
	}
}

func TestHFConfigErrors(t *testing.T) {
	base := `"model_type":"gpt2","n_embd":64,"n_layer":2,"n_head":4,"n_positions":64,"vocab_size":50257`
	for _, tc := range []struct {
		name, cfg, want string
		err             error
	}{
		{"exact gelu", `{` + base + `,"activation_function":"gelu"}`, "activation_function", export.ErrUnsupported},
		{"other epsilon", `{` + base + `,"layer_norm_epsilon":1e-6}`, "layer_norm_epsilon", export.ErrUnsupported},
		{"heads do not divide", `{"model_type":"gpt2","n_embd":64,"n_layer":2,"n_head":5,"n_positions":64,"vocab_size":10}`, "not divisible", export.ErrCheckpoint},
		{"absurd layers", `{"model_type":"gpt2","n_embd":64,"n_layer":100000000,"n_head":4,"n_positions":64,"vocab_size":10}`, "limits", export.ErrCheckpoint},
		{"absurd size", `{"model_type":"gpt2","n_embd":65536,"n_layer":1024,"n_head":1024,"n_positions":1048576,"vocab_size":2097152}`, "parameters", export.ErrCheckpoint},
		{"not json", `{`, "config.json", export.ErrCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := gpt2.ParseHFConfig([]byte(tc.cfg))
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.err, tc.want)
			}
		})
	}
}

func TestTDBConfigLimits(t *testing.T) {
	// The 112-byte config of the reliability report: refused before any
	// piece is read.
	_, _, err := gpt2.ParseTDBConfig([]byte(`{"enc":"gpt2","ctx_window":1024,"d_model":768,"n_layers":100000000,"m_attn":1,"n_heads":12,"m_mlp":4}`))
	if !errors.Is(err, export.ErrCheckpoint) || !strings.Contains(err.Error(), "limits") {
		t.Fatalf("got %v", err)
	}
}

func FuzzParseHFConfig(f *testing.F) {
	f.Add([]byte(`{"model_type":"gpt2","n_embd":64,"n_layer":2,"n_head":4,"n_positions":64,"vocab_size":50257,"n_inner":null}`))
	f.Add([]byte(`{"n_embd":-1,"n_head":0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, c, err := gpt2.ParseHFConfig(b)
		if err == nil && c.Validate() != nil {
			t.Fatalf("accepted an invalid config %+v", c)
		}
	})
}

func FuzzParseTDBConfig(f *testing.F) {
	f.Add([]byte(`{"enc":"gpt2","ctx_window":64,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":4,"m_mlp":4}`))
	f.Add([]byte(`{"m_mlp":1e300}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, c, err := gpt2.ParseTDBConfig(b)
		if err == nil && c.Validate() != nil {
			t.Fatalf("accepted an invalid config %+v", c)
		}
	})
}
