package tlnames

import (
	"errors"
	"math"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// fakeWeights serves a 2-head, d_head 2, d_model 3 layer: b_V = [1 2 3 4],
// W_V = rows [1 0 0] [0 1 0] [0 0 1] [1 1 1], ln_1.bias = [10 20 30].
type fakeWeights struct{}

func (fakeWeights) Tensor(key string) (*hooks.Tensor, error) {
	switch key {
	case "xf_layers.1.attn.v_proj.bias":
		return &hooks.Tensor{Shape: []int{4}, Data: []float32{1, 2, 3, 4}}, nil
	case "xf_layers.1.attn.v_proj.weight":
		return &hooks.Tensor{Shape: []int{4, 3}, Data: []float32{1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1}}, nil
	case "xf_layers.1.ln_1.bias":
		return &hooks.Tensor{Shape: []int{3}, Data: []float32{10, 20, 30}}, nil
	}
	return nil, errors.New("no " + key)
}

func TestResolve(t *testing.T) {
	r := Resolver(Model{NLayers: 2, NHeads: 2, DHead: 2, DModel: 3, Weights: fakeWeights{}})
	none := sae.Processing{}
	fold := sae.Processing{FoldLN: true}
	for _, c := range []struct {
		name   string
		p      sae.Processing
		site   string
		center bool
		shift  []float32
		scale  float32
	}{
		{"blocks.0.hook_resid_pre", sae.DefaultProcessing, "resid.post_emb", true, nil, 0},
		{"blocks.1.hook_resid_pre", none, "resid.torso.post_mlp@0", false, nil, 0},
		{"blocks.1.hook_resid_mid", sae.DefaultProcessing, "resid.torso.post_attn@1", true, nil, 0},
		{"blocks.1.hook_resid_post", sae.DefaultProcessing, "resid.torso.post_mlp@1", true, nil, 0},
		{"blocks.0.hook_attn_out", sae.DefaultProcessing, "resid.torso.delta_attn@0", true, nil, 0},
		{"blocks.0.hook_mlp_out", none, "resid.torso.delta_mlp@0", false, nil, 0},
		{"blocks.0.ln1.hook_scale", none, "resid.torso.ln_attn.scale@0", false, nil, 0},
		{"blocks.0.ln1.hook_normalized", fold, "resid.torso.ln_attn.post_scale@0", false, nil, 0},
		{"blocks.0.ln1.hook_normalized", none, "resid.torso.post_ln_attn@0", false, nil, 0},
		{"blocks.0.ln2.hook_normalized", fold, "resid.torso.ln_mlp.post_scale@0", false, nil, 0},
		{"blocks.0.mlp.hook_in", none, "resid.torso.post_ln_mlp@0", false, nil, 0},
		{"blocks.1.ln2.hook_scale", none, "resid.torso.ln_mlp.scale@1", false, nil, 0},
		{"blocks.1.mlp.hook_pre", none, "mlp.pre_act@1", false, nil, 0},
		{"blocks.1.mlp.hook_post", sae.DefaultProcessing, "mlp.post_act@1", false, nil, 0},
		{"blocks.1.attn.hook_q", none, "attn.q@1", false, nil, float32(math.Sqrt(math.Sqrt(2)))},
		{"blocks.1.attn.hook_k", none, "attn.k@1", false, nil, float32(math.Sqrt(math.Sqrt(2)))},
		{"blocks.1.attn.hook_v", none, "attn.v@1", false, nil, 0},
		{"blocks.1.attn.hook_z", sae.Processing{FoldValueBiases: true}, "attn.v_out@1", false, []float32{1, 2, 3, 4}, 0},
		{"blocks.1.attn.hook_z", sae.DefaultProcessing, "attn.v_out@1", false, []float32{11, 22, 33, 64}, 0},
		{"ln_final.hook_scale", none, "resid.ln_f.scale", false, nil, 0},
		{"ln_final.hook_normalized", fold, "resid.ln_f.post_scale", false, nil, 0},
		{"ln_final.hook_normalized", none, "resid.post_ln_f", false, nil, 0},
	} {
		site, m, err := r(c.name, c.p)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if site.String() != c.site {
			t.Errorf("%s: site %s, want %s", c.name, site, c.site)
		}
		var got sae.SiteMap
		if m != nil {
			got = *m
		}
		if got.Center != c.center || got.Scale != c.scale || len(got.Shift) != len(c.shift) {
			t.Errorf("%s: map %+v", c.name, got)
			continue
		}
		for i := range c.shift {
			if got.Shift[i] != c.shift[i] {
				t.Errorf("%s: shift %v, want %v", c.name, got.Shift, c.shift)
				break
			}
		}
	}
	for _, bad := range []string{"blocks.2.hook_resid_pre", "blocks.0.hook_nope", "hook_embed", "resid.post_emb"} {
		if _, _, err := r(bad, none); !errors.Is(err, ErrUnknownName) {
			t.Errorf("%s: %v, want ErrUnknownName", bad, err)
		}
	}
	if _, _, err := r("blocks.0.attn.hook_pattern", none); !errors.Is(err, ErrLayout) {
		t.Errorf("hook_pattern: %v, want ErrLayout", err)
	}
}
