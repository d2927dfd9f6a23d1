package gpt2

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/sae"
)

// Model is the model name the tables use (the blob layout's folder).
const Model = "gpt2-small"

// layers is GPT-2 small's layer count.
const layers = 12

func init() {
	for _, f := range Families() {
		sae.RegisterFamily(f)
	}
	for _, r := range Releases() {
		sae.RegisterRelease(r)
	}
}

// Families are the registered autoencoder families of GPT-2 small: the
// original's five (N = 32768 latents each; n = 3072 for mlp_post_act, 768
// for the residual deltas), then upstream's v5 TopK SAEs, named as upstream
// spells their folders, whose inputs are LN-normalised.
func Families() []sae.Family {
	fs := []sae.Family{
		{Name: "ae-mlp-post-act-v1", Model: Model, Input: sae.MLPPostAct, Dir: "mlp_post_act", Layers: layers},
		{Name: "ae-resid-delta-mlp-v1", Model: Model, Input: sae.ResidDeltaMLP, Dir: "resid_delta_mlp", Layers: layers},
		{Name: "ae-mlp-post-act-v4", Model: Model, Input: sae.MLPPostAct, Dir: "mlp_post_act_v4", Layers: layers},
		{Name: "ae-resid-delta-mlp-v4", Model: Model, Input: sae.ResidDeltaMLP, Dir: "resid_delta_mlp_v4", Layers: layers},
		{Name: "ae-resid-delta-attn-v4", Model: Model, Input: sae.ResidDeltaAttn, Dir: "resid_delta_attn_v4", Layers: layers},
	}
	for _, size := range []string{"32k", "128k"} {
		for _, loc := range []struct {
			name  string
			input sae.Input
		}{{"resid_post_attn", sae.ResidPostAttn}, {"resid_post_mlp", sae.ResidPostMLP}} {
			name := loc.name + "_v5_" + size
			fs = append(fs, sae.Family{Name: name, Model: Model, Input: loc.input, Dir: name, Layers: layers, Kind: sae.KindOpenAIV5})
		}
	}
	return fs
}

// mlpTM are gpt2-small-mlp-tm's folders and norm_scaling_factors, by layer.
var mlpTM = []struct {
	path string
	nsf  float64
}{
	{"sae_group_gpt2_blocks.0.hook_mlp_out_24576:v1", 1.049317316132615},
	{"sae_group_gpt2_blocks.1.hook_mlp_out_24576:v0", 2.3693984005104283},
	{"sae_group_gpt2_blocks.2.hook_mlp_out_24576:v0", 1.6411934982190302},
	{"sae_group_gpt2_blocks.3.hook_mlp_out_24576:v0", 1.8958522157897557},
	{"sae_group_gpt2_blocks.4.hook_mlp_out_24576:v0", 1.81673478700627},
	{"sae_group_gpt2_blocks.5.hook_mlp_out_24576:v0", 1.550234472245924},
	{"sae_group_gpt2_blocks.6.hook_mlp_out_24576:v0", 1.3237742807210804},
	{"sae_group_gpt2_blocks.7.hook_mlp_out_24576:v0", 1.1042905114723296},
	{"sae_group_gpt2_blocks.8.hook_mlp_out_24576:v1", 0.9123762783479742},
	{"sae_group_gpt2_blocks.9.hook_mlp_out_24576:v0", 0.6955335635232373},
	{"sae_group_gpt2_blocks.10.hook_mlp_out_24576:v0", 0.3619728926727644},
	{"sae_group_gpt2_blocks.11.hook_mlp_out_24576:v2", 0.2851548652550073},
}

// Releases are SAELens's GPT-2-small releases this build knows (their
// pretrained_saes.yaml entries as of SAELens 6.18).
func Releases() []sae.Release {
	centred := map[string]bool{"center_writing_weights": true}
	resJB := sae.Release{Name: "gpt2-small-res-jb", Repo: "jbloom/GPT2-Small-SAEs-Reformatted", Model: Model, Processing: centred}
	for l := 0; l < layers; l++ {
		id := fmt.Sprintf("blocks.%d.hook_resid_pre", l)
		resJB.SAEs = append(resJB.SAEs, sae.ReleaseSAE{ID: id, Path: id})
	}
	resJB.SAEs = append(resJB.SAEs, sae.ReleaseSAE{ID: "blocks.11.hook_resid_post", Path: "blocks.11.hook_resid_post"})

	mlp := sae.Release{Name: "gpt2-small-mlp-tm", Repo: "tommmcgrath/gpt2-small-mlp-out-saes", Model: Model, Processing: centred}
	for l, s := range mlpTM {
		mlp.SAEs = append(mlp.SAEs, sae.ReleaseSAE{ID: fmt.Sprintf("blocks.%d.hook_mlp_out", l), Path: s.path, NormScalingFactor: s.nsf})
	}
	out := []sae.Release{resJB, mlp}

	// jbloom's SAELens conversions of upstream's v5 SAEs.
	for _, v := range []struct {
		release, repo, hook, size, suffix string
	}{
		{"gpt2-small-resid-post-v5-32k", "jbloom/GPT2-Small-OAI-v5-32k-resid-post-SAEs", "hook_resid_post", "32k", ".pt"},
		{"gpt2-small-resid-post-v5-128k", "jbloom/GPT2-Small-OAI-v5-128k-resid-post-SAEs", "hook_resid_post", "128k", ""},
		{"gpt2-small-resid-mid-v5-32k", "jbloom/GPT2-Small-OAI-v5-32k-resid-mid-SAEs", "hook_resid_mid", "32k", ""},
		{"gpt2-small-resid-mid-v5-128k", "jbloom/GPT2-Small-OAI-v5-128k-resid-mid-SAEs", "hook_resid_mid", "128k", ""},
		{"gpt2-small-mlp-out-v5-32k", "jbloom/GPT2-Small-OAI-v5-32k-mlp-out-SAEs", "hook_mlp_out", "32k", ""},
		{"gpt2-small-mlp-out-v5-128k", "jbloom/GPT2-Small-OAI-v5-128k-mlp-out-SAEs", "hook_mlp_out", "128k", ""},
		{"gpt2-small-attn-out-v5-32k", "jbloom/GPT2-Small-OAI-v5-32k-attn-out-SAEs", "hook_attn_out", "32k", ""},
		{"gpt2-small-attn-out-v5-128k", "jbloom/GPT2-Small-OAI-v5-128k-attn-out-SAEs", "hook_attn_out", "128k", ""},
	} {
		r := sae.Release{Name: v.release, Repo: v.repo, Model: Model}
		for l := 0; l < layers; l++ {
			r.SAEs = append(r.SAEs, sae.ReleaseSAE{
				ID:   fmt.Sprintf("blocks.%d.%s", l, v.hook),
				Path: fmt.Sprintf("v5_%s_layer_%d%s", v.size, l, v.suffix),
			})
		}
		out = append(out, r)
	}
	return out
}
