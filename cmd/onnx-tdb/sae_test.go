package main

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// saeGoldenFile is the path of a golden SAE file.
func saeGoldenFile(info golden.SAEInfo) string { return filepath.Join(golden.Dir(), info.File) }

func TestSAEEncodeGolden(t *testing.T) {
	c := golden.Load(t)
	n := 0
	for i := range c.Inputs {
		in := &c.Inputs[i]
		for _, r := range in.SAE {
			n++
			t.Run(in.Name+"/"+r.SAE, func(t *testing.T) {
				info := c.SAEs[r.SAE]
				dir := t.TempDir()
				args := []string{"sae", "encode", "--model", golden.ModelDir(), "--sae", saeGoldenFile(info),
					"--at", fmt.Sprintf("%s@%d", info.Location, info.Layer), "--tokens", tokensArg(in.Rows), "--out", dir}
				if in.PadSide != nil {
					args = append(args, "--pad", *in.PadSide)
				}
				out, err := runCLI(t, args...)
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				for _, f := range []struct {
					name string
					want golden.Tensor
				}{{"latents", r.Latents}, {"reconstruction", r.Reconstruction}} {
					shape, data := readNpy(t, filepath.Join(dir, f.name+".npy"))
					if fmt.Sprint(shape) != fmt.Sprint(f.want.Shape) {
						t.Fatalf("%s: shape %v, want %v", f.name, shape, f.want.Shape)
					}
					golden.Check(t, f.name, data, f.want)
				}
			})
		}
	}
	if n != 3*len(c.Inputs) {
		t.Errorf("ran %d SAE cases", n)
	}
}

func TestSAEForwardInterventions(t *testing.T) {
	c := golden.Load(t)
	in := c.Input("batch_right")
	at := func(name string) string {
		info := c.SAEs[name]
		return fmt.Sprintf("%s@%d=%s", info.Location, info.Layer, saeGoldenFile(info))
	}
	flags := map[string][]string{
		"sae_mlp_post_act_add_error":     {"--sae", at("mlp_post_act")},
		"sae_mlp_post_act_no_error":      {"--sae", at("mlp_post_act"), "--sae-replace"},
		"sae_mlp_post_act_ablate_latent": {"--sae", at("mlp_post_act"), "--ablate", "sae.latents@1:301"},
		"sae_resid_delta_mlp_no_error":   {"--sae", at("resid_delta_mlp"), "--sae-replace"},
		"sae_topk_no_error":              {"--sae", at("resid_delta_mlp_topk"), "--sae-replace"},
	}
	n := 0
	for _, iv := range in.Interventions {
		f, ok := flags[iv.Name]
		if !ok {
			continue
		}
		n++
		t.Run(iv.Name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"forward", "--model", golden.ModelDir(), "--tokens", tokensArg(in.Rows),
				"--save-activations", dir, "--points", "logits"}, f...)
			if out, err := runCLI(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			shape, logits := readNpy(t, filepath.Join(dir, "logits.npy"))
			golden.Check(t, iv.Name, lastRows(shape, logits, in.LastRealPosition), iv.LogitsLast)
		})
	}
	if n != len(flags) {
		t.Fatalf("ran %d of %d", n, len(flags))
	}
}

func TestSAETop(t *testing.T) {
	c := golden.Load(t)
	info := c.SAEs["mlp_post_act"]
	args := []string{"sae", "top", "--model", golden.ModelDir(), "--sae", saeGoldenFile(info),
		"--at", "mlp.post_act@1", "--prompt", "The quick brown fox", "-k", "3"}
	out, err := runCLI(t, append(args, "--json")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res struct {
		Latents int
		Rows    []saeRow
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Latents != 512 || len(res.Rows) != 1 || len(res.Rows[0].Tokens) != 4 {
		t.Fatalf("unexpected result %+v", res)
	}
	for _, tok := range res.Rows[0].Tokens {
		if len(tok.Latents) != 3 {
			t.Errorf("token %d: %d latents, want 3", tok.Position, len(tok.Latents))
		}
		for i := 1; i < len(tok.Latents); i++ {
			if tok.Latents[i].Value > tok.Latents[i-1].Value {
				t.Errorf("token %d: latents not strongest first: %+v", tok.Position, tok.Latents)
			}
		}
	}
	if tok := res.Rows[0].Tokens[1]; tok.Token != " quick" {
		t.Errorf("token 1 is %q, want \" quick\"", tok.Token)
	}
	text, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	first := res.Rows[0].Tokens[0].Latents[0]
	if want := fmt.Sprintf("%d:%.4f", first.Latent, first.Value); !strings.Contains(text, want) || !strings.Contains(text, `"The"`) {
		t.Errorf("text output lacks %s:\n%s", want, text)
	}
}

func TestSAECLIErrors(t *testing.T) {
	c := golden.Load(t)
	mlp := saeGoldenFile(c.SAEs["mlp_post_act"])
	model := golden.ModelDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--ablate", "sae.latents@1:3"}, "no autoencoder is spliced at layer 1"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", "mlp.post_act@0=" + mlp, "--ablate", "sae.latents@1:3"}, "no autoencoder is spliced at layer 1"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", mlp}, "want POINT@LAYER=AUTOENCODER"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", "mlp.post_act@5=" + mlp}, "out of range"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", "sae.latents@0=" + mlp}, "per-layer point of the model"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae-replace"}, "--sae-replace without --sae"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", "resid.torso.delta_mlp@0=" + mlp}, "autoencoder takes 256 inputs"},
		{[]string{"sae", "encode", "--model", model, "--tokens", "1,2", "--sae", "ae-resid-delta-attn-v4", "--at", "mlp.post_act@0", "--out", t.TempDir()}, "reads resid.torso.delta_attn, not mlp.post_act"},
		{[]string{"sae", "encode", "--model", model, "--tokens", "1,2", "--sae", "ae-nope-v1", "--at", "mlp.post_act@0", "--out", t.TempDir()}, "unknown autoencoder"},
		{[]string{"sae", "top", "--model", model, "--tokens", "1,2", "--sae", mlp, "--at", "mlp.post_act@1", "-k", "0"}, "positive"},
	} {
		out, err := runCLI(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v (%s), want an error with %q", tc.args, err, out, tc.want)
		}
	}
}

// TestGradThroughSAE runs grad with an autoencoder spliced in: with the
// error term and no edits the gradients are those without the splice; with
// --sae-replace they pass through the autoencoder and change; a gradient
// ablation at sae.latents reaches the pass.
func TestGradThroughSAE(t *testing.T) {
	c := golden.Load(t)
	in := c.Input("prompt")
	info := c.SAEs["mlp_post_act"]
	spliceAt := fmt.Sprintf("%s@%d=%s", info.Location, info.Layer, saeGoldenFile(info))
	grad := func(extra ...string) []float32 {
		t.Helper()
		dir := t.TempDir()
		args := append([]string{"grad", "--model", golden.ModelDir(), "--tokens", tokensArg(in.Rows),
			"--target", "0,last,11", "--points", "resid.post_emb", "--save-grads", dir}, extra...)
		if out, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		_, data := readNpy(t, filepath.Join(dir, "resid.post_emb.npy"))
		return data
	}
	differ := func(a, b []float32) float64 {
		d := 0.0
		for i := range a {
			d = math.Max(d, math.Abs(float64(a[i]-b[i])))
		}
		return d
	}
	plain := grad()
	if d := differ(grad("--sae", spliceAt), plain); d > 1e-4 {
		t.Errorf("an unedited error-term splice changed the gradient by %g", d)
	}
	replaced := grad("--sae", spliceAt, "--sae-replace")
	if d := differ(replaced, plain); d < 1e-3 {
		t.Errorf("--sae-replace left the gradient as it was (off by %g)", d)
	}
	// Zeroing the latents' gradient cuts the path through the autoencoder:
	// what reaches resid.post_emb then comes by the residual stream alone.
	if d := differ(grad("--sae", spliceAt, "--sae-replace", "--ablate-grad", fmt.Sprintf("sae.latents@%d", info.Layer)), replaced); d < 1e-3 {
		t.Errorf("--ablate-grad at sae.latents changed the gradient by only %g", d)
	}
	// The sae.* points are saved like the others, activations and gradients.
	dir := t.TempDir()
	if out, err := runCLI(t, "grad", "--model", golden.ModelDir(), "--tokens", tokensArg(in.Rows), "--target", "0,last,11",
		"--sae", spliceAt, "--points", "sae.latents,sae.error", "--save-grads", dir); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, name := range []string{"sae.latents", "sae.error"} {
		shape, _ := readNpy(t, filepath.Join(dir, fmt.Sprintf("%s.L%d.npy", name, info.Layer)))
		if len(shape) != 3 || shape[0] != 1 {
			t.Errorf("%s gradient of shape %v", name, shape)
		}
	}
	if out, err := runCLI(t, "forward", "--model", golden.ModelDir(), "--tokens", tokensArg(in.Rows),
		"--sae", spliceAt, "--points", "sae.latents", "--save-activations", dir); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if shape, _ := readNpy(t, filepath.Join(dir, fmt.Sprintf("sae.latents.L%d.npy", info.Layer))); fmt.Sprint(shape) != fmt.Sprint([]int{1, len(in.Rows[0]), info.NLatents}) {
		t.Errorf("sae.latents activation of shape %v", shape)
	}
	out, err := runCLI(t, "grad", "--model", golden.ModelDir(), "--tokens", tokensArg(in.Rows), "--target", "0,last,11",
		"--ablate-grad", "sae.latents@1")
	if err == nil || !strings.Contains(out+err.Error(), "--sae") {
		t.Errorf("--ablate-grad at sae.latents without --sae: %v\n%s", err, out)
	}
}
