package llama

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

const baseConfig = `{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,
"intermediate_size":176,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
"head_dim":16,"vocab_size":512,"max_position_embeddings":64,"rms_norm_eps":1e-5,"rope_theta":10000.0,
"rope_scaling":null,"tie_word_embeddings":false,"hidden_act":"silu","torch_dtype":"float32"}`

// withKeys returns baseConfig with keys set (a nil value deletes the key).
func withKeys(t *testing.T, kv map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(baseConfig), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range kv {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseConfigDefaultsAndKeys(t *testing.T) {
	cases := []struct {
		name  string
		keys  map[string]any
		check func(Config) bool
	}{
		{"as given", nil, func(c Config) bool {
			return c.DModel == 64 && c.NHeads == 4 && c.NKVHeads == 2 && c.DHead == 16 && c.DFF == 176 &&
				c.NVocab == 512 && c.NCtx == 64 && c.RMSEps == 1e-5 && c.RopeScaling == nil && !c.TiedEmbed && c.DType == "float32"
		}},
		{"head_dim derived", map[string]any{"head_dim": nil}, func(c Config) bool { return c.DHead == 16 }},
		{"head_dim other than hidden/heads", map[string]any{"head_dim": 32}, func(c Config) bool { return c.DHead == 32 && c.QWidth() == 128 }},
		{"kv heads default to heads", map[string]any{"num_key_value_heads": nil}, func(c Config) bool { return c.NKVHeads == 4 }},
		{"HF defaults", map[string]any{"rms_norm_eps": nil, "rope_theta": nil, "max_position_embeddings": nil, "tie_word_embeddings": nil},
			func(c Config) bool { return c.RMSEps == 1e-6 && c.RopeTheta == 10000 && c.NCtx == 2048 && !c.TiedEmbed }},
		{"dtype key", map[string]any{"torch_dtype": nil, "dtype": "bfloat16"}, func(c Config) bool { return c.DType == "bfloat16" }},
		{"tied", map[string]any{"tie_word_embeddings": true}, func(c Config) bool { return c.TiedEmbed }},
		{"linear", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 4.0}},
			func(c Config) bool { return c.RopeScaling.Type == "linear" && c.RopeScaling.Factor == 4 }},
		{"llama3", map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
			func(c Config) bool { return c.RopeScaling.Type == "llama3" && c.RopeScaling.OriginalCtx == 8192 }},
		{"default rope type", map[string]any{"rope_scaling": map[string]any{"rope_type": "default"}}, func(c Config) bool { return c.RopeScaling == nil }},
		{"rope_parameters", map[string]any{"rope_theta": nil, "rope_parameters": map[string]any{"rope_type": "default", "rope_theta": 500000.0}},
			func(c Config) bool { return c.RopeTheta == 500000 && c.RopeScaling == nil }},
		{"no architectures key", map[string]any{"architectures": nil}, func(c Config) bool { return c.NLayers == 2 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(withKeys(t, tc.keys))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("config %+v", c)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		keys map[string]any
		want error
		msg  string
	}{
		{"missing hidden_size", map[string]any{"hidden_size": nil}, ErrConfig, "hidden_size missing"},
		{"zero layers", map[string]any{"num_hidden_layers": 0}, ErrConfig, "num_hidden_layers"},
		{"negative vocab", map[string]any{"vocab_size": -3}, ErrConfig, "vocab_size"},
		{"float size", map[string]any{"hidden_size": 64.5}, ErrConfig, ""},
		{"huge layers", map[string]any{"num_hidden_layers": 1 << 40}, ErrConfig, "num_hidden_layers"},
		{"huge vocab", map[string]any{"vocab_size": 1 << 30}, ErrConfig, "vocab_size"},
		{"too many parameters", map[string]any{"hidden_size": 65536, "intermediate_size": 1 << 20, "num_hidden_layers": 1024, "head_dim": 64, "num_attention_heads": 1024, "num_key_value_heads": 1024}, ErrConfig, "parameters"},
		{"kv heads do not divide", map[string]any{"num_key_value_heads": 3}, ErrConfig, "multiple"},
		{"odd head_dim", map[string]any{"head_dim": 15}, ErrConfig, "odd"},
		{"hidden not a multiple of heads", map[string]any{"head_dim": nil, "hidden_size": 66}, ErrConfig, "multiple"},
		{"zero eps", map[string]any{"rms_norm_eps": 0}, ErrConfig, "rms_norm_eps"},
		{"tiny theta", map[string]any{"rope_theta": 0.5}, ErrConfig, "rope_theta"},
		{"yarn", map[string]any{"rope_scaling": map[string]any{"rope_type": "yarn", "factor": 4.0}}, ErrUnsupported, "yarn"},
		{"dynamic", map[string]any{"rope_scaling": map[string]any{"type": "dynamic", "factor": 2.0}}, ErrUnsupported, "dynamic"},
		{"linear without factor", map[string]any{"rope_scaling": map[string]any{"type": "linear"}}, ErrConfig, "factor"},
		{"linear factor below 1", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 0.5}}, ErrConfig, "factor"},
		{"llama3 without original", map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}}, ErrConfig, "original_max_position_embeddings"},
		{"llama3 low >= high", map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}, ErrConfig, "low_freq_factor"},
		{"rope_scaling not an object", map[string]any{"rope_scaling": "linear"}, ErrConfig, "rope_scaling"},
		{"other model type", map[string]any{"model_type": "mistral"}, ErrUnsupported, "mistral"},
		{"other architecture", map[string]any{"architectures": []string{"GPT2LMHeadModel"}}, ErrUnsupported, "GPT2LMHeadModel"},
		{"gelu", map[string]any{"hidden_act": "gelu"}, ErrUnsupported, "gelu"},
		{"attention bias", map[string]any{"attention_bias": true}, ErrUnsupported, "bias"},
		{"int8 dtype", map[string]any{"torch_dtype": "int8"}, ErrUnsupported, "int8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(withKeys(t, tc.keys))
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
	for _, bad := range []string{"", "null", "[]", "{", `{"hidden_size":"64"}`, strings.Repeat(" ", maxCfgSize+1)} {
		if _, err := ParseConfig([]byte(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("%.20q: error %v, want ErrConfig", bad, err)
		}
	}
}

// TestInvFreq checks the frequencies against Hugging Face's rules: the
// default theta^(-2i/d), linear divided by the factor, and llama3's three
// bands (high frequencies kept, low ones divided, a blend between).
func TestInvFreq(t *testing.T) {
	c := Config{DHead: 128, RopeTheta: 500000}
	base := c.InvFreq()
	if len(base) != 64 || base[0] != 1 || math.Abs(float64(base[1])-math.Pow(500000, -2.0/128)) > 1e-7 {
		t.Fatalf("default: %v", base[:2])
	}
	c.RopeScaling = &RopeScaling{Type: "linear", Factor: 4}
	for i, v := range c.InvFreq() {
		if v != base[i]/4 {
			t.Fatalf("linear %d: %g, want %g", i, v, base[i]/4)
		}
	}
	c.RopeScaling = &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalCtx: 8192}
	var kept, divided, blended int
	for i, v := range c.InvFreq() {
		wave := 2 * math.Pi / float64(base[i])
		switch {
		case wave < 8192/4.0:
			if v != base[i] {
				t.Errorf("%d (high): %g, want %g", i, v, base[i])
			}
			kept++
		case wave > 8192/1.0:
			if v != base[i]/8 {
				t.Errorf("%d (low): %g, want %g", i, v, base[i]/8)
			}
			divided++
		default:
			if !(v < base[i] && v > base[i]/8) {
				t.Errorf("%d (medium): %g not between %g and %g", i, v, base[i]/8, base[i])
			}
			blended++
		}
	}
	if kept == 0 || divided == 0 || blended == 0 {
		t.Errorf("bands %d/%d/%d: the test config should reach all three", kept, divided, blended)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(baseConfig))
	f.Add([]byte(`{"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":4,
"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":16}}`))
	f.Add([]byte(`{"hidden_size":1e30}`))
	f.Add([]byte(`{"rope_scaling":{"type":"linear","factor":-1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if !errors.Is(err, ErrConfig) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v is neither ErrConfig nor ErrUnsupported", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		if c.params() > MaxParams {
			t.Fatalf("%d parameters accepted", c.params())
		}
		if n := len(c.InvFreq()); n != c.DHead/2 {
			t.Fatalf("%d frequencies for d_head %d", n, c.DHead)
		}
	})
}
