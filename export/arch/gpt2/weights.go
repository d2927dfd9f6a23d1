package gpt2

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/export"
)

// weightLocations says where ModelContext.Weight finds each standard
// weight location in a GPT-2 export: the original's get_weight, which
// splits the head axis out of a stored piece and permutes it into the
// standard shape (in the comments: the einsum the original uses).
func weightLocations(c Config) []export.WeightLocation {
	ax := func(a int) *int { return &a }
	once := func(loc, key string, split *int, perm []int, broadcast bool) export.WeightLocation {
		return export.WeightLocation{Location: loc, Layer: -1, Source: key, Split: split, Perm: perm, Broadcast: broadcast}
	}
	out := []export.WeightLocation{
		once("embedding", "tok_embed.weight", nil, nil, false),
		once("unembedding", "unembed.weight", nil, []int{1, 0}, false), // vr->rv
		once("position_embedding", "pos_embed.weight", nil, nil, false),
		once("layer_norm_gain.final", "final_ln.weight", nil, nil, true),
		once("layer_norm_bias.final", "final_ln.bias", nil, nil, false),
	}
	for l := 0; l < c.NLayers; l++ {
		at := func(loc, key string, split *int, perm []int) export.WeightLocation {
			return export.WeightLocation{Location: loc, Layer: l, Source: fmt.Sprintf("xf_layers.%d.%s", l, key), Split: split, Perm: perm}
		}
		out = append(out,
			at("mlp.to_hidden", "mlp.in_layer.weight", nil, []int{1, 0}),          // hr->rh
			at("mlp.to_residual", "mlp.out_layer.weight", nil, []int{1, 0}),       // rh->hr
			at("attn.to_query", "attn.q_proj.weight", ax(0), []int{0, 2, 1}),      // hqr->hrq
			at("attn.to_key", "attn.k_proj.weight", ax(0), []int{0, 2, 1}),        // hkr->hrk
			at("attn.to_value", "attn.v_proj.weight", ax(0), []int{0, 2, 1}),      // hvr->hrv
			at("attn.to_residual", "attn.out_proj.weight", ax(1), []int{1, 2, 0}), // rhv->hvr
			at("layer_norm_gain.pre_attn", "ln_1.weight", nil, nil),
			at("layer_norm_gain.pre_mlp", "ln_2.weight", nil, nil),
		)
	}
	return out
}

// LocateWeights implements export.KeyedWeights for imported graphs whose
// hook map names TDB's GPT-2 state-dict keys: the locations whose keys are
// all present, and the MLP output layers whose weight and bias both are.
func (plugin) LocateWeights(sources map[string]bool, nLayers int) ([]export.WeightLocation, []export.OutLayer, bool) {
	var locs []export.WeightLocation
	for _, w := range weightLocations(Config{NLayers: nLayers}) {
		if sources[w.Source] {
			locs = append(locs, w)
		}
	}
	var outs []export.OutLayer
	for l := 0; l < nLayers; l++ {
		o := export.OutLayer{Layer: l, Weight: fmt.Sprintf("xf_layers.%d.mlp.out_layer.weight", l), Bias: fmt.Sprintf("xf_layers.%d.mlp.out_layer.bias", l)}
		if sources[o.Weight] && sources[o.Bias] {
			outs = append(outs, o)
		}
	}
	return locs, outs, len(locs) > 0 || len(outs) > 0
}
