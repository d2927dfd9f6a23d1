package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

func importLlama(t *testing.T) string {
	t.Helper()
	src := filepath.Join(golden.Dir(), "foreign_llama")
	out := filepath.Join(t.TempDir(), "llama")
	msg, err := runCLI(t, "import", "--onnx", filepath.Join(src, "model.onnx"), "--hookmap", filepath.Join(src, "hookmap.json"), "--out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	flat := strings.Join(strings.Fields(msg), " ")
	for _, want := range []string{"layers 2, d_model 64, heads 4 x 16, d_ff 176, vocab 512", "mlp_hidden@1 -> mlp.post_act@1", "resid_pre@1 -> resid.torso.post_mlp@0", "token ids only"} {
		if !strings.Contains(flat, want) {
			t.Errorf("import output lacks %q:\n%s", want, msg)
		}
	}
	return out
}

// The saved activation files carry TDB's names; the hook map's own names
// lead to them through the manifest's aliases.
func TestImportLlamaThenForwardSavesEveryPoint(t *testing.T) {
	ref := golden.LoadLlama(t)
	dir := importLlama(t)
	man, err := export.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	aliases, err := man.SiteAliases()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ref.Inputs {
		t.Run(in.Name, func(t *testing.T) {
			acts := t.TempDir()
			if msg, err := runCLI(t, "forward", "--model", dir, "--tokens", tokensArg(in.Tokens), "--save-activations", acts); err != nil {
				t.Fatalf("%v\n%s", err, msg)
			}
			_, logits := readNpy(t, filepath.Join(acts, "logits.npy"))
			golden.Check(t, "logits", logits, in.Logits)
			for _, a := range in.Activations {
				key := a.Point
				if a.Layer != nil {
					key = fmt.Sprintf("%s@%d", a.Point, *a.Layer)
				}
				site, ok := aliases[key]
				if !ok {
					t.Fatalf("no alias %s", key)
				}
				shape, data := readNpy(t, filepath.Join(acts, site.Point.FileName(site.Layer)+".npy"))
				if fmt.Sprint(shape) != fmt.Sprint(a.Shape) {
					t.Fatalf("%s: shape %v, want %v", key, shape, a.Shape)
				}
				golden.Check(t, key, data, a.Tensor)
			}
			// The ablation of cases.json, from the flag, by the TDB name
			// and by the model's own (its hook map's) name.
			for _, iv := range in.Interventions {
				for _, flag := range []string{fmt.Sprintf("mlp.post_act@%d:%d", iv.Layer, iv.Unit), fmt.Sprintf("mlp_hidden@%d:%d", iv.Layer, iv.Unit)} {
					acts := t.TempDir()
					if msg, err := runCLI(t, "forward", "--model", dir, "--tokens", tokensArg(in.Tokens), "--ablate", flag, "--save-activations", acts, "--points", "logits"); err != nil {
						t.Fatalf("%v\n%s", err, msg)
					}
					_, logits := readNpy(t, filepath.Join(acts, "logits.npy"))
					golden.Check(t, flag, logits, iv.Logits)
				}
			}
		})
	}
}

func TestImportLlamaErrorsFromTheCLI(t *testing.T) {
	dir := importLlama(t)
	for _, tc := range []struct {
		args []string
		want error
	}{
		{[]string{"forward", "--prompt", "hello"}, modelctx.ErrNoTokenizer},
		{[]string{"forward", "--tokens", "1,2,3;4"}, modelctx.ErrRagged},
		{[]string{"forward", "--tokens", "1,2", "--ablate", "attn.q@0:1"}, modelctx.ErrNoPoint},
		{[]string{"forward", "--tokens", "1,2", "--points", "resid.ln_f.scale"}, modelctx.ErrNoPoint},
		{[]string{"sample", "--prompt", "hello"}, modelctx.ErrNoTokenizer},
	} {
		out, err := runCLI(t, append(append([]string{}, tc.args[0], "--model", dir), tc.args[1:]...)...)
		if !errors.Is(err, tc.want) {
			t.Errorf("%v: got %v (%s), want %v", tc.args, err, out, tc.want)
		}
	}
	src := filepath.Join(golden.Dir(), "foreign_llama")
	base := []string{"import", "--onnx", filepath.Join(src, "model.onnx"), "--hookmap", filepath.Join(src, "hookmap.json")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--out", dir}, "output folder exists"},
		{[]string{"--out", filepath.Join(t.TempDir(), "x"), "--tokenizer", "gpt2"}, "vocabulary has 512 tokens"},
		{[]string{"--out", filepath.Join(t.TempDir(), "x"), "--map", "mlp_hidden"}, "want NAME=POINT"},
		{[]string{"--out", filepath.Join(t.TempDir(), "x"), "--dim", "n_heads=0"}, "want KEY=N"},
		{[]string{"--out", filepath.Join(t.TempDir(), "x"), "--dim", "heads=4"}, "unknown key"},
		{[]string{"--out", filepath.Join(t.TempDir(), "x"), "--map", "mlp_hidden=attn.q"}, "does not have its point's layout"},
	} {
		out, err := runCLI(t, append(append([]string{}, base...), tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
}

func TestImportLlamaSampleFromTokens(t *testing.T) {
	dir := importLlama(t)
	out, err := runCLI(t, "sample", "--model", dir, "--tokens", "0,245,388,302", "--temperature", "0", "-n", "4", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res struct {
		Tokens [][]int `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "{\n"):]), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Tokens) != 1 || len(res.Tokens[0]) != 4 {
		t.Fatalf("tokens %v", res.Tokens)
	}
}

// foreign/: torch's whole-graph export of the golden GPT-2, imported with
// the GPT-2 tokenizer; every saved point matches TDB's values, and the cut
// check of its README (mlp.post_act@1 neuron 7) matches the GPT-2 export.
func TestImportForeignGPT2ThenForward(t *testing.T) {
	src := golden.RequireShared(t, "foreign")
	c := golden.Load(t)
	dir := filepath.Join(t.TempDir(), "foreign")
	msg, err := runCLI(t, "import", "--onnx", filepath.Join(src, "model.onnx"), "--hookmap", filepath.Join(src, "hookmap.json"), "--out", dir, "--tokenizer", "gpt2")
	if err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	for _, name := range []string{"prompt", "single"} {
		in := c.Input(name)
		acts := t.TempDir()
		if msg, err := runCLI(t, "forward", "--model", dir, "--tokens", tokensArg(in.Rows), "--save-activations", acts); err != nil {
			t.Fatalf("%v\n%s", err, msg)
		}
		_, logits := readNpy(t, filepath.Join(acts, "logits.npy"))
		golden.Check(t, name+" logits", logits, *in.Logits)
		n := 0
		for _, a := range in.Activations {
			file := a.Hook
			if a.Layer != nil {
				file = fmt.Sprintf("%s.L%d", a.Hook, *a.Layer)
			}
			if a.Hook == "attn.qk_softmax_denominator" {
				if _, err := os.Stat(filepath.Join(acts, file+".npy")); err == nil {
					t.Errorf("%s saved, but foreign/ does not map it", file)
				}
				continue
			}
			_, data := readNpy(t, filepath.Join(acts, file+".npy"))
			golden.Check(t, name+" "+file, data, a.Tensor)
			n++
		}
		if n != 46 {
			t.Errorf("%s: compared %d points", name, n)
		}
	}
	// The cut check, through both paths.
	in := c.Input("prompt")
	var got [2][]float32
	for i, model := range []string{dir, golden.ModelDir()} {
		acts := t.TempDir()
		if msg, err := runCLI(t, "forward", "--model", model, "--prompt", in.Text, "--ablate", "mlp.post_act@1:7", "--save-activations", acts, "--points", "logits"); err != nil {
			t.Fatalf("%v\n%s", err, msg)
		}
		_, got[i] = readNpy(t, filepath.Join(acts, "logits.npy"))
	}
	if len(got[0]) != len(got[1]) {
		t.Fatal("logits of different sizes")
	}
	tol := golden.Tolerance(in.Logits.MaxAbs)
	for i := range got[0] {
		if d := got[0][i] - got[1][i]; d > float32(tol) || -d > float32(tol) {
			t.Fatalf("ablated logits differ at %d: %v vs %v", i, got[0][i], got[1][i])
		}
	}
}
