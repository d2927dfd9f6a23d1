package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func tokensArg(rows [][]int) string {
	var parts []string
	for _, r := range rows {
		var ids []string
		for _, id := range r {
			ids = append(ids, fmt.Sprint(id))
		}
		parts = append(parts, strings.Join(ids, ","))
	}
	return strings.Join(parts, ";")
}

func readNpy(t *testing.T, path string) ([]int, []float32) {
	t.Helper()
	shape, data, err := npy.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return shape, data
}

// lastRows picks each row's logits at its last real position from [B,T,V].
func lastRows(shape []int, data []float32, last []int) []float32 {
	return golden.LastLogits(shape, data, last)
}

func TestForwardSavesEveryGoldenActivation(t *testing.T) {
	checkGoldenActivations(t, golden.ModelDir())
}

// TestForwardHFGPT2FolderMatchesGolden loads the golden weights as a
// Hugging Face GPT2LMHeadModel folder (safetensors, Conv1D layouts, fused
// c_attn) and checks every golden activation through the CLI.
func TestForwardHFGPT2FolderMatchesGolden(t *testing.T) {
	checkGoldenActivations(t, filepath.Join(golden.RequireShared(t, "hf"), "gpt2"))
}

func checkGoldenActivations(t *testing.T, model string) {
	c := golden.Load(t)
	for _, in := range c.Inputs {
		t.Run(in.Name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"forward", "--model", model, "--tokens", tokensArg(in.Rows), "--save-activations", dir}
			if in.PadSide != nil {
				args = append(args, "--pad", *in.PadSide)
			}
			if out, err := runCLI(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			shape, logits := readNpy(t, filepath.Join(dir, "logits.npy"))
			if in.Logits != nil {
				golden.Check(t, "logits", logits, *in.Logits)
			} else {
				golden.Check(t, "logits_last", lastRows(shape, logits, in.LastRealPosition), *in.LogitsLast)
			}
			for _, a := range in.Activations {
				name := a.Hook
				if a.Layer != nil {
					name = fmt.Sprintf("%s.L%d", a.Hook, *a.Layer)
				}
				got, data := readNpy(t, filepath.Join(dir, name+".npy"))
				if fmt.Sprint(got) != fmt.Sprint(a.Shape) {
					t.Errorf("%s: shape %v, want %v", name, got, a.Shape)
					continue
				}
				golden.Check(t, name, data, a.Tensor)
			}
		})
	}
}

func TestForwardInterventionFlags(t *testing.T) {
	c := golden.Load(t)
	in := c.Input("batch_right")
	patch := filepath.Join(t.TempDir(), "patch.npy")
	if err := npy.Write(patch, c.PatchVector.Shape, golden.Read(t, c.PatchVector)); err != nil {
		t.Fatal(err)
	}
	flags := map[string][]string{
		"ablate_mlp_neuron":      {"--ablate", "mlp.post_act@1:7"},
		"ablate_attn_head_v_out": {"--ablate", "attn.v_out@0:2"},
		"patch_delta_attn":       {"--add", "resid.torso.delta_attn@0=" + patch},
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
			args := append([]string{"forward", "--model", golden.ModelDir(), "--tokens", tokensArg(in.Rows), "--save-activations", dir, "--points", "logits"}, f...)
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

func TestForwardPromptTopTokens(t *testing.T) {
	out, err := runCLI(t, "forward", "--model", golden.ModelDir(), "--prompt", "The quick brown fox jumps over the lazy dog.", "--top", "3", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res struct {
		Rows []rowResult `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Rows) != 1 || len(res.Rows[0].Top) != 3 || len(res.Rows[0].Tokens) != 10 {
		t.Fatalf("unexpected result %+v", res)
	}
	top := res.Rows[0].Top
	if top[0].Logit < top[1].Logit || top[1].Logit < top[2].Logit {
		t.Errorf("top tokens not sorted: %+v", top)
	}
}

func TestForwardErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tokens", "1,50257"}, "out of range"},
		{[]string{"--tokens", "1,2", "--points", "mlp.nope"}, "unknown hook point"},
		{[]string{"--tokens", "1,2", "--ablate", "mlp.post_act@7:1"}, "layer 7 out of range"},
		{[]string{"--tokens", "1,2", "--ablate", "mlp.post_act@1:999"}, "out of range"},
		{[]string{"--tokens", "1;"}, "row 1 is empty"},
		{[]string{}, "give --tokens or --prompt"},
	} {
		out, err := runCLI(t, append([]string{"forward", "--model", golden.ModelDir()}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
}

func TestExportThenInfo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "exported")
	if msg, err := runCLI(t, "export", "--model", golden.ModelDir(), "--out", out); err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	if msg, err := runCLI(t, "export", "--model", golden.ModelDir(), "--out", out); err == nil {
		t.Fatalf("export over an existing folder without --force passed: %s", msg)
	}
	msg, err := runCLI(t, "info", "--model", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"layers 2", "d_model 64", "hook sites   48", "gpt2"} {
		if !strings.Contains(msg, want) {
			t.Errorf("info output lacks %q:\n%s", want, msg)
		}
	}
}
