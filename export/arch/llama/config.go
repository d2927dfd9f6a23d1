package llama

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Errors callers branch on.
var (
	// ErrConfig marks a config.json that is malformed or asks for sizes
	// that do not fit together or exceed the limits below.
	ErrConfig = errors.New("invalid llama config")
	// ErrUnsupported marks a valid Hugging Face config with a feature this
	// architecture does not implement (another rope scaling, biases, ...).
	ErrUnsupported = errors.New("unsupported llama feature")
)

// Limits on a config's sizes, checked before anything is allocated. They are
// generous for real models (Llama 3 405B: 126 layers, d_model 16384, 128
// heads, d_ff 53248, 128256 tokens) and refuse absurd ones.
const (
	MaxLayers  = 1024
	MaxDModel  = 1 << 16
	MaxHeads   = 1024
	MaxDHead   = 1024
	MaxDFF     = 1 << 20
	MaxVocab   = 1 << 22
	MaxCtx     = 1 << 22
	MaxParams  = 1 << 38 // float32 parameters in all
	maxCfgSize = 1 << 20 // bytes of config.json
)

// Config is a Llama-family model's configuration.
type Config struct {
	NLayers     int          `json:"n_layers"`
	DModel      int          `json:"d_model"`
	NHeads      int          `json:"n_heads"`
	NKVHeads    int          `json:"n_kv_heads"`
	DHead       int          `json:"d_head"`
	DFF         int          `json:"d_ff"`
	NVocab      int          `json:"n_vocab"`
	NCtx        int          `json:"n_ctx"`
	RMSEps      float64      `json:"rms_norm_eps"`
	RopeTheta   float64      `json:"rope_theta"`
	RopeScaling *RopeScaling `json:"rope_scaling,omitempty"`
	TiedEmbed   bool         `json:"tie_word_embeddings"`
	DType       string       `json:"dtype,omitempty"` // the checkpoint's dtype; compute is float32
}

// RopeScaling is the rotary frequency scaling of the config (Hugging Face's
// rope_scaling object). Type is "linear" or "llama3".
type RopeScaling struct {
	Type   string  `json:"type"`
	Factor float64 `json:"factor"`
	// llama3 only.
	LowFreqFactor  float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor float64 `json:"high_freq_factor,omitempty"`
	OriginalCtx    int     `json:"original_max_position_embeddings,omitempty"`
}

// hfConfig is the part of a Hugging Face config.json read here. Pointers
// tell a missing key from a zero.
type hfConfig struct {
	Architectures []string        `json:"architectures"`
	ModelType     string          `json:"model_type"`
	HiddenSize    *int64          `json:"hidden_size"`
	Intermediate  *int64          `json:"intermediate_size"`
	NumLayers     *int64          `json:"num_hidden_layers"`
	NumHeads      *int64          `json:"num_attention_heads"`
	NumKVHeads    *int64          `json:"num_key_value_heads"`
	HeadDim       *int64          `json:"head_dim"`
	VocabSize     *int64          `json:"vocab_size"`
	MaxPositions  *int64          `json:"max_position_embeddings"`
	RMSEps        *float64        `json:"rms_norm_eps"`
	RopeTheta     *float64        `json:"rope_theta"`
	RopeScaling   json.RawMessage `json:"rope_scaling"`
	RopeParams    json.RawMessage `json:"rope_parameters"`
	TieEmbed      *bool           `json:"tie_word_embeddings"`
	HiddenAct     string          `json:"hidden_act"`
	AttnBias      bool            `json:"attention_bias"`
	MLPBias       bool            `json:"mlp_bias"`
	TorchDType    string          `json:"torch_dtype"`
	DType         string          `json:"dtype"`
}

// hfRope is a rope_scaling (or rope_parameters) object.
type hfRope struct {
	Type           string   `json:"type"`
	RopeType       string   `json:"rope_type"`
	Factor         *float64 `json:"factor"`
	LowFreqFactor  *float64 `json:"low_freq_factor"`
	HighFreqFactor *float64 `json:"high_freq_factor"`
	OriginalCtx    *int64   `json:"original_max_position_embeddings"`
	RopeTheta      *float64 `json:"rope_theta"`
}

// ParseConfig reads a Hugging Face LlamaForCausalLM config.json and
// validates it. Missing optional keys take Hugging Face's LlamaConfig
// defaults (rms_norm_eps 1e-6, rope_theta 10000, num_key_value_heads =
// num_attention_heads, head_dim = hidden_size / num_attention_heads,
// max_position_embeddings 2048, untied embeddings).
func ParseConfig(b []byte) (Config, error) {
	if len(b) > maxCfgSize {
		return Config{}, fmt.Errorf("%w: config.json of %d bytes (limit %d)", ErrConfig, len(b), maxCfgSize)
	}
	var h hfConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&h); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := h.checkKind(); err != nil {
		return Config{}, err
	}
	c := Config{RMSEps: 1e-6, RopeTheta: 10000, NCtx: 2048}
	req := []struct {
		key string
		v   *int64
		dst *int
	}{
		{"hidden_size", h.HiddenSize, &c.DModel},
		{"intermediate_size", h.Intermediate, &c.DFF},
		{"num_hidden_layers", h.NumLayers, &c.NLayers},
		{"num_attention_heads", h.NumHeads, &c.NHeads},
		{"vocab_size", h.VocabSize, &c.NVocab},
	}
	for _, r := range req {
		if r.v == nil {
			return Config{}, fmt.Errorf("%w: %s missing", ErrConfig, r.key)
		}
		if *r.v <= 0 || *r.v > math.MaxInt32 {
			return Config{}, fmt.Errorf("%w: %s = %d", ErrConfig, r.key, *r.v)
		}
		*r.dst = int(*r.v)
	}
	c.NKVHeads = c.NHeads
	opt := []struct {
		key string
		v   *int64
		dst *int
	}{
		{"num_key_value_heads", h.NumKVHeads, &c.NKVHeads},
		{"max_position_embeddings", h.MaxPositions, &c.NCtx},
	}
	for _, r := range opt {
		if r.v == nil {
			continue
		}
		if *r.v <= 0 || *r.v > math.MaxInt32 {
			return Config{}, fmt.Errorf("%w: %s = %d", ErrConfig, r.key, *r.v)
		}
		*r.dst = int(*r.v)
	}
	if h.HeadDim != nil {
		if *h.HeadDim <= 0 || *h.HeadDim > math.MaxInt32 {
			return Config{}, fmt.Errorf("%w: head_dim = %d", ErrConfig, *h.HeadDim)
		}
		c.DHead = int(*h.HeadDim)
	} else {
		if c.DModel%c.NHeads != 0 {
			return Config{}, fmt.Errorf("%w: hidden_size %d is not a multiple of num_attention_heads %d (and no head_dim)", ErrConfig, c.DModel, c.NHeads)
		}
		c.DHead = c.DModel / c.NHeads
	}
	if h.RMSEps != nil {
		c.RMSEps = *h.RMSEps
	}
	if h.RopeTheta != nil {
		c.RopeTheta = *h.RopeTheta
	}
	if h.TieEmbed != nil {
		c.TiedEmbed = *h.TieEmbed
	}
	c.DType = h.TorchDType
	if c.DType == "" {
		c.DType = h.DType
	}
	rope := h.RopeScaling
	if isNull(rope) {
		rope = h.RopeParams
	}
	if !isNull(rope) {
		rs, theta, err := parseRope(rope)
		if err != nil {
			return Config{}, err
		}
		c.RopeScaling = rs
		if theta != nil {
			c.RopeTheta = *theta
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (h *hfConfig) checkKind() error {
	if h.ModelType != "" && h.ModelType != "llama" {
		return fmt.Errorf("%w: model_type %q, want llama", ErrUnsupported, h.ModelType)
	}
	if len(h.Architectures) > 0 {
		ok := false
		for _, a := range h.Architectures {
			ok = ok || a == "LlamaForCausalLM"
		}
		if !ok {
			return fmt.Errorf("%w: architectures %v, want LlamaForCausalLM", ErrUnsupported, h.Architectures)
		}
	}
	if h.HiddenAct != "" && h.HiddenAct != "silu" {
		return fmt.Errorf("%w: hidden_act %q (only silu)", ErrUnsupported, h.HiddenAct)
	}
	if h.AttnBias || h.MLPBias {
		return fmt.Errorf("%w: attention_bias/mlp_bias (the projections have no biases here)", ErrUnsupported)
	}
	for _, d := range []string{h.TorchDType, h.DType} {
		switch d {
		case "", "float32", "float16", "bfloat16", "float64":
		default:
			return fmt.Errorf("%w: dtype %q (float32, float16, bfloat16 or float64)", ErrUnsupported, d)
		}
	}
	return nil
}

func isNull(m json.RawMessage) bool {
	s := strings.TrimSpace(string(m))
	return s == "" || s == "null"
}

// parseRope reads rope_scaling (or rope_parameters, which may also carry
// rope_theta). A "default" type means no scaling.
func parseRope(m json.RawMessage) (*RopeScaling, *float64, error) {
	var r hfRope
	if err := json.Unmarshal(m, &r); err != nil {
		return nil, nil, fmt.Errorf("%w: rope_scaling: %v", ErrConfig, err)
	}
	typ := r.RopeType
	if typ == "" {
		typ = r.Type
	}
	need := func(name string, v *float64) (float64, error) {
		if v == nil {
			return 0, fmt.Errorf("%w: rope_scaling %s needs %s", ErrConfig, typ, name)
		}
		return *v, nil
	}
	switch typ {
	case "", "default":
		return nil, r.RopeTheta, nil
	case "linear":
		f, err := need("factor", r.Factor)
		if err != nil {
			return nil, nil, err
		}
		return &RopeScaling{Type: "linear", Factor: f}, r.RopeTheta, nil
	case "llama3":
		s := &RopeScaling{Type: "llama3"}
		var err error
		if s.Factor, err = need("factor", r.Factor); err != nil {
			return nil, nil, err
		}
		if s.LowFreqFactor, err = need("low_freq_factor", r.LowFreqFactor); err != nil {
			return nil, nil, err
		}
		if s.HighFreqFactor, err = need("high_freq_factor", r.HighFreqFactor); err != nil {
			return nil, nil, err
		}
		if r.OriginalCtx == nil || *r.OriginalCtx <= 0 || *r.OriginalCtx > MaxCtx {
			return nil, nil, fmt.Errorf("%w: rope_scaling llama3 needs original_max_position_embeddings in (0,%d]", ErrConfig, MaxCtx)
		}
		s.OriginalCtx = int(*r.OriginalCtx)
		return s, r.RopeTheta, nil
	}
	return nil, nil, fmt.Errorf("%w: rope_scaling type %q (linear and llama3 are supported)", ErrUnsupported, typ)
}

// KVWidth is the width of one layer's cached keys (or values): the
// key-value heads times d_head.
func (c Config) KVWidth() int { return c.NKVHeads * c.DHead }

// QWidth is the width of the query projection: heads times d_head.
func (c Config) QWidth() int { return c.NHeads * c.DHead }

// Validate checks that the sizes are within the limits and fit together.
func (c Config) Validate() error {
	lim := []struct {
		name string
		v    int
		max  int
	}{
		{"num_hidden_layers", c.NLayers, MaxLayers},
		{"hidden_size", c.DModel, MaxDModel},
		{"num_attention_heads", c.NHeads, MaxHeads},
		{"num_key_value_heads", c.NKVHeads, MaxHeads},
		{"head_dim", c.DHead, MaxDHead},
		{"intermediate_size", c.DFF, MaxDFF},
		{"vocab_size", c.NVocab, MaxVocab},
		{"max_position_embeddings", c.NCtx, MaxCtx},
	}
	for _, l := range lim {
		if l.v <= 0 || l.v > l.max {
			return fmt.Errorf("%w: %s = %d, want 1..%d", ErrConfig, l.name, l.v, l.max)
		}
	}
	switch {
	case c.DHead%2 != 0:
		return fmt.Errorf("%w: head_dim %d is odd (rotary pairs need an even one)", ErrConfig, c.DHead)
	case c.NHeads%c.NKVHeads != 0:
		return fmt.Errorf("%w: num_attention_heads %d is not a multiple of num_key_value_heads %d", ErrConfig, c.NHeads, c.NKVHeads)
	case !(c.RMSEps > 0) || c.RMSEps > 1:
		return fmt.Errorf("%w: rms_norm_eps %g, want (0,1]", ErrConfig, c.RMSEps)
	case !(c.RopeTheta > 1) || math.IsInf(c.RopeTheta, 0):
		return fmt.Errorf("%w: rope_theta %g, want a finite value > 1", ErrConfig, c.RopeTheta)
	}
	if p := c.params(); p > MaxParams {
		return fmt.Errorf("%w: %d parameters (limit %d)", ErrConfig, p, int64(MaxParams))
	}
	if s := c.RopeScaling; s != nil {
		if err := s.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (s *RopeScaling) validate() error {
	if !(s.Factor >= 1) || math.IsInf(s.Factor, 0) || s.Factor > 1e6 {
		return fmt.Errorf("%w: rope_scaling factor %g, want [1,1e6]", ErrConfig, s.Factor)
	}
	switch s.Type {
	case "linear":
		return nil
	case "llama3":
		if !(s.LowFreqFactor > 0) || !(s.HighFreqFactor > s.LowFreqFactor) || math.IsInf(s.HighFreqFactor, 0) {
			return fmt.Errorf("%w: rope_scaling llama3 wants 0 < low_freq_factor (%g) < high_freq_factor (%g)", ErrConfig, s.LowFreqFactor, s.HighFreqFactor)
		}
		if s.OriginalCtx <= 0 || s.OriginalCtx > MaxCtx {
			return fmt.Errorf("%w: rope_scaling original_max_position_embeddings %d", ErrConfig, s.OriginalCtx)
		}
		return nil
	}
	return fmt.Errorf("%w: rope_scaling type %q (linear and llama3 are supported)", ErrUnsupported, s.Type)
}

// params counts the float32 parameters the config asks for, in int64 so that
// no product overflows (every factor is below 2^22).
func (c Config) params() int64 {
	D, F, V := int64(c.DModel), int64(c.DFF), int64(c.NVocab)
	q, kv := int64(c.QWidth()), int64(c.KVWidth())
	layer := D*q + 2*D*kv + q*D + 3*D*F + 2*D
	n := int64(c.NLayers)*layer + V*D + D
	if !c.TiedEmbed {
		n += V * D
	}
	return n
}

// InvFreq returns the rotary inverse frequencies, d_head/2 of them, as
// Hugging Face computes them in float32: theta^(-2i/d_head), then the
// scaling's adjustment (linear: divided by factor; llama3: low frequencies
// divided by factor, high ones kept, a smooth blend between).
func (c Config) InvFreq() []float32 {
	n := c.DHead / 2
	out := make([]float32, n)
	for i := range out {
		e := float32(2*i) / float32(c.DHead)
		out[i] = 1 / float32(math.Pow(c.RopeTheta, float64(e)))
	}
	s := c.RopeScaling
	if s == nil {
		return out
	}
	f := float32(s.Factor)
	switch s.Type {
	case "linear":
		for i := range out {
			out[i] /= f
		}
	case "llama3":
		lowWave := float32(float64(s.OriginalCtx) / s.LowFreqFactor)
		highWave := float32(float64(s.OriginalCtx) / s.HighFreqFactor)
		lo, hi := float32(s.LowFreqFactor), float32(s.HighFreqFactor)
		for i, inv := range out {
			wave := float32(2*math.Pi) / inv
			switch {
			case wave < highWave:
				// high frequency: kept
			case wave > lowWave:
				out[i] = inv / f
			default:
				smooth := (float32(s.OriginalCtx)/wave - lo) / (hi - lo)
				out[i] = (1-smooth)*inv/f + smooth*inv
			}
		}
	}
	return out
}
