package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// writeTinySAELens writes a standard SAELens SAE (d_in 64, 8 latents) with
// the given site names into a new folder.
func writeTinySAELens(t *testing.T, arch, hook, hookOut string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sae")
	os.MkdirAll(dir, 0o755)
	md := map[string]any{"hook_name": hook, "sae_lens_training_version": "6.0.0"}
	if hookOut != "" {
		md["hook_name_out"] = hookOut
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": arch, "d_in": 64, "d_sae": 8, "d_out": 64, "metadata": md})
	os.WriteFile(filepath.Join(dir, "cfg.json"), cfg, 0o644)
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i%7-3) / 10
		}
		return v
	}
	var b bytes.Buffer
	err := safetensors.Write(&b, []safetensors.Tensor{
		safetensors.F32("W_enc", []int{64, 8}, fill(512)), safetensors.F32("b_enc", []int{8}, fill(8)),
		safetensors.F32("W_dec", []int{8, 64}, fill(512)), safetensors.F32("b_dec", []int{64}, fill(64)),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "sae_weights.safetensors"), b.Bytes(), 0o644)
	return dir
}

func TestSAELensCLIErrors(t *testing.T) {
	dir := golden.RequireShared(t, "saelens")
	model := filepath.Join(filepath.Dir(dir), "model")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sae", "encode", "--model", model, "--tokens", "1,2", "--sae", filepath.Join(dir, "standard_attn_out"), "--at", "resid.torso.delta_attn@0", "--out", t.TempDir()},
			"disagrees"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", "blocks.0.hook_attn_out=" + filepath.Join(dir, "standard_attn_out")},
			"disagrees"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", writeTinySAELens(t, "standard", "blocks.7.hook_resid_pre", "")},
			"blocks.7.hook_resid_pre"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", writeTinySAELens(t, "transcoder", "blocks.1.hook_mlp_out", "blocks.0.hook_mlp_out")},
			"precedes"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", writeTinySAELens(t, "standard", "blocks.0.attn.hook_pattern", "")},
			"[B,H,Q,K]"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--sae", "saelens:gpt2-small-nope/blocks.0.hook_resid_pre"},
			"gpt2-small-res-jb"},
		{[]string{"forward", "--model", model, "--tokens", "1,2", "--ablate", "blocks.9.hook_resid_pre:5"},
			"blocks.9.hook_resid_pre"},
	} {
		out, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v (%s), want an error with %q", c.args[len(c.args)-1], err, out, c.want)
		}
	}
}

// TestSAEInfo prints a SAELens SAE's family, sizes, sites, normalisation
// and dead latents.
func TestSAEInfo(t *testing.T) {
	dir := golden.RequireShared(t, "saelens")
	model := filepath.Join(filepath.Dir(dir), "model")
	out, err := runCLI(t, "sae", "info", "--sae", filepath.Join(dir, "standard_resid_pre"), "--model", model, "--json")
	if err != nil {
		t.Fatal(err, out)
	}
	var info saeInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatal(err, out)
	}
	if info.Family != "standard" || info.NInputs != 64 || info.NLatents != 256 || info.Norm != "none" ||
		info.Site == nil || info.Site.HookName != "blocks.1.hook_resid_pre" || info.TDBSite != "resid.torso.post_mlp@0" ||
		info.SAELayer == nil || *info.SAELayer != 1 || info.DeadLatents == nil || *info.DeadLatents != 3 {
		t.Errorf("info %+v", info)
	}
	out, err = runCLI(t, "sae", "info", "--sae", filepath.Join(dir, "skip_transcoder_mlp"), "--model", model)
	if err != nil {
		t.Fatal(err, out)
	}
	for _, want := range []string{"skip_transcoder", "blocks.1.ln2.hook_normalized -> blocks.1.hook_mlp_out", "resid.torso.post_ln_mlp@1 -> resid.torso.delta_mlp@1", "d_out 64"} {
		if !strings.Contains(out, want) {
			t.Errorf("sae info lacks %q:\n%s", want, out)
		}
	}
}

// TestSAELensSampleAndGrad splices a SAELens SAE into sample and grad by
// its folder alone.
func TestSAELensSampleAndGrad(t *testing.T) {
	dir := golden.RequireShared(t, "saelens")
	model := filepath.Join(filepath.Dir(dir), "model")
	if out, err := runCLI(t, "sample", "--model", model, "--tokens", "464,2068", "-n", "2", "--sae", filepath.Join(dir, "gated_hook_z"), "--ablate", "sae.latents@0:3"); err != nil {
		t.Fatal(err, out)
	}
	out, err := runCLI(t, "grad", "--model", model, "--tokens", "464,2068,7586", "--sae", filepath.Join(dir, "transcoder_mlp"), "--sae-replace", "--target", "0,2,11", "--json")
	if err != nil {
		t.Fatal(err, out)
	}
	if !strings.Contains(out, "sae.latents") {
		t.Errorf("grad through a transcoder reports no sae.latents gradient:\n%.400s", out)
	}
}

// TestSAELensReleaseCLI loads saelens:RELEASE/ID through the CLI from a
// local server with the Hub's URL layout.
func TestSAELensReleaseCLI(t *testing.T) {
	dir := golden.RequireShared(t, "saelens")
	model := filepath.Join(filepath.Dir(dir), "model")
	src := filepath.Join(dir, "standard_attn_out")
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		name, ok := strings.CutPrefix(r.URL.Path, "/cli-test/saes/resolve/main/attn_out_1/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	t.Setenv("HF_ENDPOINT", srv.URL)
	sae.RegisterRelease(sae.Release{Name: "cli-test-release", Repo: "cli-test/saes", SAEs: []sae.ReleaseSAE{{ID: "blocks.1.hook_attn_out", Path: "attn_out_1"}}})
	out := t.TempDir()
	args := []string{"sae", "encode", "--model", model, "--tokens", "464,2068,7586,21831,18045,625,262,16931,3290,13",
		"--sae", "saelens:cli-test-release/blocks.1.hook_attn_out", "--out", out}
	if msg, err := runCLI(t, args...); err != nil {
		t.Fatal(err, msg)
	}
	_, got := readNpy(t, filepath.Join(out, "latents.npy"))
	want, err := golden.ReadFile(filepath.Join(dir, "prompt", "standard_attn_out", "latents.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, fail := golden.Diff(got, want, golden.Tolerance(3)); fail != "" {
		t.Errorf("latents through the hub: %s", fail)
	}
	if hits == 0 {
		t.Error("nothing was downloaded")
	}
}

// TestForwardReadsTLNames saves a TransformerLens-named point in TL's
// coordinates: blocks.1.hook_resid_pre is resid.torso.post_mlp@0 centred.
func TestForwardReadsTLNames(t *testing.T) {
	out := t.TempDir()
	if msg, err := runCLI(t, "forward", "--model", golden.ModelDir(), "--tokens", "464,2068,7586",
		"--points", "blocks.1.hook_resid_pre,resid.torso.post_mlp", "--save-activations", out); err != nil {
		t.Fatal(err, msg)
	}
	shape, tl := readNpy(t, filepath.Join(out, "blocks.1.hook_resid_pre.npy"))
	_, tdb := readNpy(t, filepath.Join(out, "resid.torso.post_mlp.L0.npy"))
	D := shape[len(shape)-1]
	for r := 0; r < len(tdb)/D; r++ {
		var mean float64
		for _, v := range tdb[r*D : (r+1)*D] {
			mean += float64(v) / float64(D)
		}
		for i := r * D; i < (r+1)*D; i++ {
			if d := float64(tl[i]) - (float64(tdb[i]) - mean); d > 1e-5 || d < -1e-5 {
				t.Fatalf("row %d: TL value %g, want %g", r, tl[i], float64(tdb[i])-mean)
			}
		}
	}
}

// TestGradDetachTLName stops the gradient at a TransformerLens name as at
// its TDB site.
func TestGradDetachTLName(t *testing.T) {
	args := []string{"grad", "--model", golden.ModelDir(), "--tokens", "464,2068,7586", "--target", "0,2,11", "--json", "--points", "resid.post_emb"}
	tl, err := runCLI(t, append(args, "--detach", "blocks.1.hook_resid_pre")...)
	if err != nil {
		t.Fatal(err, tl)
	}
	tdb, err := runCLI(t, append(args, "--detach", "resid.torso.post_mlp@0")...)
	if err != nil {
		t.Fatal(err, tdb)
	}
	plain, err := runCLI(t, args...)
	if err != nil {
		t.Fatal(err, plain)
	}
	if tl != tdb || tl == plain {
		t.Errorf("--detach blocks.1.hook_resid_pre:\n%.300s\nwant as resid.torso.post_mlp@0:\n%.300s\n(plain:\n%.300s)", tl, tdb, plain)
	}
}
