package gpt2_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/sae"
	_ "github.com/onnx-tdb/onnx-tdb/sae/gpt2"
)

func TestFamilyLocations(t *testing.T) {
	want := map[string]string{
		"ae-mlp-post-act-v1":     "mlp_post_act",
		"ae-resid-delta-mlp-v1":  "resid_delta_mlp",
		"ae-mlp-post-act-v4":     "mlp_post_act_v4",
		"ae-resid-delta-mlp-v4":  "resid_delta_mlp_v4",
		"ae-resid-delta-attn-v4": "resid_delta_attn_v4",
	}
	names := sae.Names("gpt2-small")
	if fmt.Sprint(names) != "[ae-mlp-post-act-v1 ae-resid-delta-mlp-v1 ae-mlp-post-act-v4 ae-resid-delta-mlp-v4 ae-resid-delta-attn-v4 resid_post_attn_v5_32k resid_post_mlp_v5_32k resid_post_attn_v5_128k resid_post_mlp_v5_128k]" {
		t.Errorf("names %v", names)
	}
	if len(sae.Names("gpt2-xl")) != 0 {
		t.Error("gpt2-xl has no autoencoders")
	}
	for _, name := range names[:5] {
		f, err := sae.LookupFamily("gpt2-small", name)
		if err != nil {
			t.Fatal(err)
		}
		if f.Dir != want[name] || f.Layers != 12 {
			t.Errorf("%s: dir %s, %d layers", name, f.Dir, f.Layers)
		}
		loc := f.Location(7)
		if wantLoc := "az://openaipublic/sparse-autoencoder/gpt2-small/" + want[name] + "/autoencoders/7.pt"; loc != wantLoc {
			t.Errorf("%s layer 7: %s, want %s", name, loc, wantLoc)
		}
		l, err := fetch.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		if https := "https://openaipublic.blob.core.windows.net/sparse-autoencoder/gpt2-small/" + want[name] + "/autoencoders/7.pt"; l.URL() != https {
			t.Errorf("%s: URL %s, want %s", name, l.URL(), https)
		}
		cfg := f.Config()
		if len(cfg.Paths) != 12 || cfg.Paths[11] != f.Location(11) || cfg.Validate() != nil {
			t.Errorf("%s: config %+v", name, cfg)
		}
		wantInput := map[string]sae.Input{"mlp_post_act": sae.MLPPostAct, "resid_delta_mlp": sae.ResidDeltaMLP, "resid_delta_attn": sae.ResidDeltaAttn}[strings.TrimSuffix(want[name], "_v4")]
		if f.Input != wantInput {
			t.Errorf("%s: input %s, want %s", name, f.Input, wantInput)
		}
		ref, in, err := sae.Resolve(name, 3)
		if err != nil || ref != f.Location(3) || in != f.Input {
			t.Errorf("sae.Resolve(%s, 3) = %s, %s, %v", name, ref, in, err)
		}
	}
	if f, _ := sae.LookupFamily("", "ae-resid-delta-attn-v4"); f.Input.NodeType() != sae.AttentionAutoencoderLatent || f.Input.Point().Path() != "resid.torso.delta_attn" {
		t.Errorf("attention family: node type %s, point %s", f.Input.NodeType(), f.Input.Point())
	}
	if _, err := sae.LookupFamily("gpt2-small", "ae-mlp-post-act-v2"); !errors.Is(err, sae.ErrUnknownAutoencoder) || !strings.Contains(err.Error(), "ae-mlp-post-act-v4") {
		t.Errorf("unknown name: %v (want sae.ErrUnknownAutoencoder listing the names)", err)
	}
	if _, err := sae.NewNamedContext("gpt2-small", "nope"); !errors.Is(err, sae.ErrUnknownAutoencoder) {
		t.Errorf("sae.NewNamedContext(nope): %v", err)
	}
	if _, _, err := sae.Resolve("ae-mlp-post-act-v4", 12); !errors.Is(err, sae.ErrNoLayer) {
		t.Errorf("layer 12: %v, want sae.ErrNoLayer", err)
	}
	for _, ref := range []string{"layer1.pt", "az://openaipublic/x/y.pt", "/tmp/ae-folder", "ae-folder.pt"} {
		if got, in, err := sae.Resolve(ref, 0); got != ref || in != "" || err != nil {
			t.Errorf("sae.Resolve(%s) = %s, %s, %v; want it unchanged", ref, got, in, err)
		}
	}
}

func TestV5Families(t *testing.T) {
	r, err := sae.ResolveRef("resid_post_mlp_v5_32k", 6)
	if err != nil {
		t.Fatal(err)
	}
	if r.Location != "az://openaipublic/sparse-autoencoder/gpt2-small/resid_post_mlp_v5_32k/autoencoders/6.pt" || r.Kind != sae.KindOpenAIV5 || r.Input.Point().Path() != "resid.torso.post_mlp" {
		t.Errorf("resid_post_mlp_v5_32k@6: %+v", r)
	}
	if r, _ := sae.ResolveRef("resid_post_attn_v5_128k", 0); r.Input.Point().Path() != "resid.torso.post_attn" {
		t.Errorf("resid_post_attn_v5_128k: %+v", r)
	}
	if _, err := sae.ResolveRef("resid_post_mlp_v5_32k", -1); !errors.Is(err, sae.ErrNoLayer) {
		t.Errorf("no layer: %v", err)
	}
}

func TestReleases(t *testing.T) {
	for _, c := range []struct {
		release, id, repo, path string
		nsf                     float64
		cww                     bool
	}{
		{"gpt2-small-res-jb", "blocks.8.hook_resid_pre", "jbloom/GPT2-Small-SAEs-Reformatted", "blocks.8.hook_resid_pre", 0, true},
		{"gpt2-small-res-jb", "blocks.11.hook_resid_post", "jbloom/GPT2-Small-SAEs-Reformatted", "blocks.11.hook_resid_post", 0, true},
		{"gpt2-small-mlp-tm", "blocks.0.hook_mlp_out", "tommmcgrath/gpt2-small-mlp-out-saes", "sae_group_gpt2_blocks.0.hook_mlp_out_24576:v1", 1.049317316132615, true},
		{"gpt2-small-mlp-tm", "blocks.11.hook_mlp_out", "tommmcgrath/gpt2-small-mlp-out-saes", "sae_group_gpt2_blocks.11.hook_mlp_out_24576:v2", 0.2851548652550073, true},
		{"gpt2-small-resid-post-v5-32k", "blocks.3.hook_resid_post", "jbloom/GPT2-Small-OAI-v5-32k-resid-post-SAEs", "v5_32k_layer_3.pt", 0, false},
		{"gpt2-small-resid-post-v5-128k", "blocks.3.hook_resid_post", "jbloom/GPT2-Small-OAI-v5-128k-resid-post-SAEs", "v5_128k_layer_3", 0, false},
	} {
		r, s, err := sae.LookupRelease(c.release, c.id)
		if err != nil {
			t.Errorf("%s/%s: %v", c.release, c.id, err)
			continue
		}
		if r.Repo != c.repo || s.Path != c.path || s.NormScalingFactor != c.nsf || r.Processing["center_writing_weights"] != c.cww {
			t.Errorf("%s/%s: repo %s path %s nsf %g processing %v", c.release, c.id, r.Repo, s.Path, s.NormScalingFactor, r.Processing)
		}
	}
	_, _, err := sae.LookupRelease("gpt2-small-nope", "x")
	if !errors.Is(err, sae.ErrUnknownRelease) || !strings.Contains(err.Error(), "gpt2-small-res-jb") || !strings.Contains(err.Error(), "gpt2-small-mlp-tm") {
		t.Errorf("unknown release: %v (want the known ones listed)", err)
	}
	if _, _, err := sae.LookupRelease("gpt2-small-res-jb", "blocks.12.hook_resid_pre"); !errors.Is(err, sae.ErrUnknownRelease) {
		t.Errorf("unknown id: %v", err)
	}
}
