package llama

import (
	"fmt"
	"strings"
)

// WeightSpec is one initializer of the stage graphs and the checkpoint
// tensor it comes from.
type WeightSpec struct {
	Name      string  // initializer name in the graphs
	Source    string  // Hugging Face tensor name (with the "model." prefix)
	Transpose bool    // stored as the transpose of the [out,in] nn.Linear weight, ready for MatMul
	Dims      []int64 // dims as stored in the weights file
}

// Weights lists the initializers the stage graphs read, in file order. The
// unembedding comes from lm_head.weight, or from the token embedding when
// the config ties them.
func Weights(c Config) []WeightSpec {
	D, F, V := int64(c.DModel), int64(c.DFF), int64(c.NVocab)
	Q, KV := int64(c.QWidth()), int64(c.KVWidth())
	ws := []WeightSpec{{"embed_tokens.weight", "model.embed_tokens.weight", false, []int64{V, D}}}
	for l := 0; l < c.NLayers; l++ {
		p := fmt.Sprintf("layers.%d.", l)
		src := "model." + p
		ws = append(ws,
			WeightSpec{p + "input_layernorm.weight", src + "input_layernorm.weight", false, []int64{D}},
			WeightSpec{p + "q_proj.weight.T", src + "self_attn.q_proj.weight", true, []int64{D, Q}},
			WeightSpec{p + "k_proj.weight.T", src + "self_attn.k_proj.weight", true, []int64{D, KV}},
			WeightSpec{p + "v_proj.weight.T", src + "self_attn.v_proj.weight", true, []int64{D, KV}},
			WeightSpec{p + "o_proj.weight.T", src + "self_attn.o_proj.weight", true, []int64{Q, D}},
			WeightSpec{p + "post_attention_layernorm.weight", src + "post_attention_layernorm.weight", false, []int64{D}},
			WeightSpec{p + "gate_proj.weight.T", src + "mlp.gate_proj.weight", true, []int64{D, F}},
			WeightSpec{p + "up_proj.weight.T", src + "mlp.up_proj.weight", true, []int64{D, F}},
			WeightSpec{p + "down_proj.weight.T", src + "mlp.down_proj.weight", true, []int64{F, D}},
		)
	}
	unembed := "lm_head.weight"
	if c.TiedEmbed {
		unembed = "model.embed_tokens.weight"
	}
	return append(ws,
		WeightSpec{"norm.weight", "model.norm.weight", false, []int64{D}},
		WeightSpec{"lm_head.weight.T", unembed, true, []int64{D, V}},
	)
}

// sourceNames lists the names a checkpoint may store a tensor under: as
// written, and without the "model." prefix (some exports drop it).
func sourceNames(name string) []string {
	if rest, ok := strings.CutPrefix(name, "model."); ok {
		return []string{name, rest}
	}
	return []string{name}
}
