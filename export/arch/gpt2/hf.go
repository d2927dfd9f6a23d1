package gpt2

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
)

// HFConfig is the part of a Hugging Face GPT2LMHeadModel config.json this
// package reads. Pointers tell a missing key from a zero.
type HFConfig struct {
	ModelType           string   `json:"model_type"`
	Architectures       []string `json:"architectures,omitempty"`
	NEmbd               int      `json:"n_embd"`
	NLayer              int      `json:"n_layer"`
	NHead               int      `json:"n_head"`
	NPositions          int      `json:"n_positions"`
	NCtx                int      `json:"n_ctx,omitempty"`
	NInner              *int     `json:"n_inner"`
	VocabSize           int      `json:"vocab_size"`
	LayerNormEpsilon    *float64 `json:"layer_norm_epsilon,omitempty"`
	ActivationFunction  string   `json:"activation_function,omitempty"`
	TieWordEmbeddings   *bool    `json:"tie_word_embeddings,omitempty"`
	ScaleAttnWeights    *bool    `json:"scale_attn_weights,omitempty"`
	ScaleAttnByLayerIdx bool     `json:"scale_attn_by_inverse_layer_idx,omitempty"`
	AddCrossAttention   bool     `json:"add_cross_attention,omitempty"`
}

// isHFConfig reports whether config.json is a Hugging Face GPT-2 config.
func isHFConfig(b []byte) bool {
	var c struct {
		ModelType     string   `json:"model_type"`
		Architectures []string `json:"architectures"`
	}
	if json.Unmarshal(b, &c) != nil {
		return false
	}
	if c.ModelType == "gpt2" {
		return true
	}
	for _, a := range c.Architectures {
		if a == "GPT2LMHeadModel" || a == "GPT2Model" {
			return true
		}
	}
	return false
}

// ParseHFConfig reads a GPT2LMHeadModel config.json and derives the model's
// dimensions. Settings whose maths the GPT-2 graphs do not implement (an
// activation other than gelu_new, a LayerNorm epsilon other than 1e-5,
// unscaled or layer-scaled attention, cross-attention) are refused.
func ParseHFConfig(b []byte) (HFConfig, Config, error) {
	var h HFConfig
	if err := json.Unmarshal(b, &h); err != nil {
		return h, Config{}, fmt.Errorf("%w: config.json: %v", export.ErrCheckpoint, err)
	}
	unsupported := func(format string, a ...any) (HFConfig, Config, error) {
		return h, Config{}, fmt.Errorf("%w: config.json: "+format, append([]any{export.ErrUnsupported}, a...)...)
	}
	if h.ActivationFunction != "" && h.ActivationFunction != "gelu_new" {
		return unsupported("activation_function %q: only gelu_new (the tanh approximation) is implemented", h.ActivationFunction)
	}
	if h.LayerNormEpsilon != nil && math.Abs(*h.LayerNormEpsilon-1e-5) > 1e-12 {
		return unsupported("layer_norm_epsilon %v: only 1e-5 is implemented", *h.LayerNormEpsilon)
	}
	if h.ScaleAttnWeights != nil && !*h.ScaleAttnWeights {
		return unsupported("scale_attn_weights false is not implemented")
	}
	if h.ScaleAttnByLayerIdx {
		return unsupported("scale_attn_by_inverse_layer_idx is not implemented")
	}
	if h.AddCrossAttention {
		return unsupported("add_cross_attention is not implemented")
	}
	if h.NHead <= 0 || h.NEmbd%h.NHead != 0 {
		return h, Config{}, fmt.Errorf("%w: config.json: n_embd %d is not divisible by n_head %d", export.ErrCheckpoint, h.NEmbd, h.NHead)
	}
	c := Config{NLayers: h.NLayer, DModel: h.NEmbd, NHeads: h.NHead, DHead: h.NEmbd / h.NHead,
		DFF: 4 * h.NEmbd, NVocab: h.VocabSize, NCtx: h.NPositions}
	if h.NInner != nil {
		c.DFF = *h.NInner
	}
	if err := c.Validate(); err != nil {
		return h, c, fmt.Errorf("%w: %v", export.ErrCheckpoint, err)
	}
	return h, c, nil
}

// HF is a Hugging Face GPT2LMHeadModel folder: config.json and
// model.safetensors (or shards with an index), float32, float16 or
// bfloat16 (widened to float32). Its tensors are served under TDB's
// state-dict keys in TDB's layout, so it exports exactly as the same
// weights in TDB format do.
type HF struct {
	Dir    string
	Config HFConfig
	cfg    Config
	set    *safetensors.Set
	prefix string // "transformer." when the names carry it

	mu         sync.Mutex
	cachedName string
	cached     []float32
	cachedDims []int
}

// OpenHF opens a Hugging Face GPT-2 folder.
func OpenHF(dir string) (*HF, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", export.ErrCheckpoint, dir, err)
	}
	raw, cfg, err := ParseHFConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", export.ErrCheckpoint, dir, err)
	}
	h := &HF{Dir: dir, Config: raw, cfg: cfg, set: set}
	if set.Has("transformer.wte.weight") {
		h.prefix = "transformer."
	}
	if !set.Has(h.prefix + "wte.weight") {
		set.Close()
		return nil, fmt.Errorf("%w: %s: no wte.weight (with or without the transformer. prefix)", export.ErrCheckpoint, dir)
	}
	return h, nil
}

// Close closes the safetensors files.
func (h *HF) Close() error { return h.set.Close() }

// Architecture implements export.Source.
func (h *HF) Architecture() string { return Name }

// Describe implements export.Source.
func (h *HF) Describe() string { return h.Dir }

// Build implements export.Source. It closes the folder's files when done.
func (h *HF) Build(ctx context.Context, b *export.Builder) error {
	defer h.Close()
	return build(ctx, b, h.cfg, h.Tensor, sourceInfo{Format: "hf", HF: &h.Config})
}

// read returns a tensor of the folder (the last one read is kept, as the
// fused c_attn is read once for each of q, k and v).
func (h *HF) read(name string) ([]float32, []int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cachedName == name {
		return h.cached, h.cachedDims, nil
	}
	v, dims, err := h.set.Float32(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", export.ErrCheckpoint, h.Dir, err)
	}
	h.cachedName, h.cached, h.cachedDims = name, v, dims
	return v, dims, nil
}

// Tensor serves a TDB state-dict key: HF's Conv1D weights ([in, out]) are
// transposed to nn.Linear's [out, in], the fused c_attn is split into q, k
// and v, and the unembedding is wte when lm_head.weight is absent (tied).
func (h *HF) Tensor(key string) ([]float32, []int, error) {
	want, err := StateDictShape(h.cfg, key)
	if err != nil {
		return nil, nil, err
	}
	name, part, transpose := h.hfName(key)
	v, dims, err := h.read(name)
	if err != nil {
		return nil, nil, err
	}
	D := h.cfg.DModel
	if part >= 0 { // a third of c_attn along its output axis
		switch {
		case len(dims) == 2 && dims[0] == D && dims[1] == 3*D:
			out := make([]float32, D*D)
			for i := 0; i < D; i++ {
				copy(out[i*D:(i+1)*D], v[i*3*D+part*D:i*3*D+(part+1)*D])
			}
			v, dims = out, []int{D, D}
		case len(dims) == 1 && dims[0] == 3*D:
			v, dims = append([]float32(nil), v[part*D:(part+1)*D]...), []int{D}
		default:
			return nil, nil, fmt.Errorf("%w: %s: %s has shape %v, want [%d %d] or [%d]", export.ErrCheckpoint, h.Dir, name, dims, D, 3*D, 3*D)
		}
	}
	if transpose {
		if len(dims) != 2 {
			return nil, nil, fmt.Errorf("%w: %s: %s has shape %v, want a matrix", export.ErrCheckpoint, h.Dir, name, dims)
		}
		v, dims = export.Transpose2D(v, dims[0], dims[1]), []int{dims[1], dims[0]}
	}
	if fmt.Sprint(dims) != fmt.Sprint(want) {
		return nil, nil, fmt.Errorf("%w: %s: %s has shape %v, config.json needs %v for %s", export.ErrCheckpoint, h.Dir, name, dims, want, key)
	}
	return v, dims, nil
}

// hfName maps a TDB key to the HF tensor holding it: which third of c_attn
// (-1 for none) and whether it is a Conv1D weight to transpose.
func (h *HF) hfName(key string) (name string, part int, transpose bool) {
	p := h.prefix
	switch key {
	case "tok_embed.weight":
		return p + "wte.weight", -1, false
	case "pos_embed.weight":
		return p + "wpe.weight", -1, false
	case "unembed.weight":
		if h.set.Has("lm_head.weight") {
			return "lm_head.weight", -1, false
		}
		return p + "wte.weight", -1, false
	case "final_ln.weight", "final_ln.bias":
		return p + "ln_f." + strings.TrimPrefix(key, "final_ln."), -1, false
	}
	var l int
	fmt.Sscanf(key, "xf_layers.%d.", &l)
	rest := strings.TrimPrefix(key, fmt.Sprintf("xf_layers.%d.", l))
	block := fmt.Sprintf("%sh.%d.", p, l)
	kind, isWeight := strings.CutSuffix(rest, ".weight")
	suffix := ".weight"
	if !isWeight {
		kind, suffix = strings.TrimSuffix(rest, ".bias"), ".bias"
	}
	switch kind {
	case "ln_1", "ln_2":
		return block + kind + suffix, -1, false
	case "attn.q_proj", "attn.k_proj", "attn.v_proj":
		part := map[string]int{"attn.q_proj": 0, "attn.k_proj": 1, "attn.v_proj": 2}[kind]
		return block + "attn.c_attn" + suffix, part, isWeight
	case "attn.out_proj":
		return block + "attn.c_proj" + suffix, -1, isWeight
	case "mlp.in_layer":
		return block + "mlp.c_fc" + suffix, -1, isWeight
	case "mlp.out_layer":
		return block + "mlp.c_proj" + suffix, -1, isWeight
	}
	return key, -1, false
}
