package llama_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
)

// fixture describes a small random Llama folder for tests.
type fixture struct {
	hidden, inter, layers, heads, kvHeads, headDim, vocab, ctx int
	omitHeadDim                                                bool // leave head_dim out (then it is hidden/heads)
	tied                                                       bool
	theta, eps                                                 float64
	rope                                                       map[string]any // rope_scaling, nil for none
	dtype                                                      string         // F32, F16 or BF16
	shards                                                     int            // 0 or 1: one file; more: an index and shards
	noPrefix                                                   bool           // tensor names without "model."
}

// tinyGQA is a model with grouped-query attention, a head_dim that is not
// hidden/heads, llama3 rope scaling and tied embeddings.
var tinyGQA = fixture{
	hidden: 24, inter: 40, layers: 2, heads: 4, kvHeads: 2, headDim: 8, vocab: 50, ctx: 32,
	tied: true, theta: 500000, eps: 1e-5, dtype: "F32",
	rope: map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
}

// tinyLinear is a model with linear rope scaling in bfloat16 shards, names
// without the "model." prefix and no head_dim key.
var tinyLinear = fixture{
	hidden: 32, inter: 48, layers: 3, heads: 4, kvHeads: 1, headDim: 8, omitHeadDim: true, vocab: 60, ctx: 32,
	theta: 10000, eps: 1e-6, dtype: "BF16", shards: 2, noPrefix: true,
	rope: map[string]any{"type": "linear", "factor": 2.0},
}

// tinyF16 is plain multi-head attention without rope scaling, an untied
// unembedding and float16 weights.
var tinyF16 = fixture{
	hidden: 16, inter: 24, layers: 1, heads: 2, kvHeads: 2, headDim: 8, vocab: 50, ctx: 16,
	theta: 10000, eps: 1e-5, dtype: "F16",
}

// model holds a fixture's weights (as the reader widens them) by HF name.
type model struct {
	f fixture
	w map[string][]float32
}

func (f fixture) config() map[string]any {
	c := map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"hidden_size":             f.hidden,
		"intermediate_size":       f.inter,
		"num_hidden_layers":       f.layers,
		"num_attention_heads":     f.heads,
		"num_key_value_heads":     f.kvHeads,
		"vocab_size":              f.vocab,
		"max_position_embeddings": f.ctx,
		"rms_norm_eps":            f.eps,
		"rope_theta":              f.theta,
		"rope_scaling":            f.rope,
		"tie_word_embeddings":     f.tied,
		"hidden_act":              "silu",
		"torch_dtype":             map[string]string{"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[f.dtype],
	}
	if !f.omitHeadDim {
		c["head_dim"] = f.headDim
	}
	return c
}

// shapes lists every tensor of the folder with its shape.
func (f fixture) shapes() map[string][]int {
	q, kv := f.heads*f.headDim, f.kvHeads*f.headDim
	s := map[string][]int{
		"model.embed_tokens.weight": {f.vocab, f.hidden},
		"model.norm.weight":         {f.hidden},
	}
	if !f.tied {
		s["lm_head.weight"] = []int{f.vocab, f.hidden}
	}
	for l := 0; l < f.layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		s[p+"input_layernorm.weight"] = []int{f.hidden}
		s[p+"post_attention_layernorm.weight"] = []int{f.hidden}
		s[p+"self_attn.q_proj.weight"] = []int{q, f.hidden}
		s[p+"self_attn.k_proj.weight"] = []int{kv, f.hidden}
		s[p+"self_attn.v_proj.weight"] = []int{kv, f.hidden}
		s[p+"self_attn.o_proj.weight"] = []int{f.hidden, q}
		s[p+"mlp.gate_proj.weight"] = []int{f.inter, f.hidden}
		s[p+"mlp.up_proj.weight"] = []int{f.inter, f.hidden}
		s[p+"mlp.down_proj.weight"] = []int{f.hidden, f.inter}
	}
	return s
}

// write makes the folder under dir and returns the weights as read back.
func (f fixture) write(t testing.TB, dir string, seed uint64) *model {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	m := &model{f: f, w: map[string][]float32{}}
	var tensors []safetensors.Tensor
	names := make([]string, 0)
	for name := range f.shapes() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		shape := f.shapes()[name]
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			if len(shape) == 1 {
				v[i] = float32(1 + 0.3*r.NormFloat64()) // norm weights near 1
			} else {
				v[i] = float32(0.3 * r.NormFloat64())
			}
		}
		stored := name
		if f.noPrefix && len(name) > 6 && name[:6] == "model." {
			stored = name[6:]
		}
		tn, back := encode(stored, shape, v, f.dtype)
		m.w[name] = back
		tensors = append(tensors, tn)
	}
	writeJSONFile(t, filepath.Join(dir, "config.json"), f.config())
	if f.shards <= 1 {
		writeST(t, filepath.Join(dir, safetensors.SingleFile), tensors)
		return m
	}
	weightMap := map[string]string{}
	for s := 0; s < f.shards; s++ {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, f.shards)
		var part []safetensors.Tensor
		for i := s; i < len(tensors); i += f.shards {
			part = append(part, tensors[i])
			weightMap[tensors[i].Name] = file
		}
		writeST(t, filepath.Join(dir, file), part)
	}
	writeJSONFile(t, filepath.Join(dir, safetensors.IndexFile), map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
	return m
}

// encode stores v in dtype and returns the values a reader widens it to.
func encode(name string, shape []int, v []float32, dtype string) (safetensors.Tensor, []float32) {
	if dtype == "F32" {
		return safetensors.F32(name, shape, v), v
	}
	b := make([]byte, 2*len(v))
	back := make([]float32, len(v))
	for i, x := range v {
		var h uint16
		if dtype == "BF16" {
			h = uint16(math.Float32bits(x) >> 16) // truncation: a valid bfloat16 either way
			back[i] = math.Float32frombits(uint32(h) << 16)
		} else {
			h = f16(x)
			back[i] = safetensors.HalfToFloat32(h)
		}
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return safetensors.Tensor{Name: name, DType: dtype, Shape: shape, Data: b}, back
}

// f16 rounds a small normal float32 to half precision by truncation (the
// test values are well inside the half range).
func f16(x float32) uint16 {
	bits := math.Float32bits(x)
	sign := uint16(bits>>16) & 0x8000
	exp := int((bits>>23)&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	return sign | uint16(exp)<<10 | uint16((bits>>13)&0x3ff)
}

func writeST(t testing.TB, path string, tensors []safetensors.Tensor) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(f, tensors, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeJSONFile(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
