package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// TestForwardHFLlamaFolder runs forward --model on the shared Hugging Face
// Llama folder: every reference point saved by --save-activations, and the
// ablated logits of --ablate, within the golden tolerance.
func TestForwardHFLlamaFolder(t *testing.T) {
	c := golden.LoadHFLlama(t)
	for _, in := range c.Inputs {
		t.Run(in.Name, func(t *testing.T) {
			dir := t.TempDir()
			out, err := runCLI(t, "forward", "--model", c.Dir, "--tokens", tokensArg(in.Tokens), "--save-activations", dir)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, a := range in.Activations {
				shape, data := readNpy(t, filepath.Join(dir, a.NPY))
				a.CheckFile(t, a.NPY, data, shape)
			}
			for _, iv := range in.Interventions {
				dir := t.TempDir()
				out, err := runCLI(t, "forward", "--model", c.Dir, "--tokens", tokensArg(in.Tokens),
					"--ablate", iv.Ablate, "--points", "logits", "--save-activations", dir)
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				shape, data := readNpy(t, filepath.Join(dir, "logits.npy"))
				iv.Logits.CheckFile(t, iv.Name, data, shape)
			}
		})
	}
}

// TestSampleHFLlamaFolder samples the reference prompts greedily through
// the CLI, as one left-padded batch: the reference tokens, and no strings
// (the folder has no tokenizer).
func TestSampleHFLlamaFolder(t *testing.T) {
	c := golden.LoadHFLlama(t)
	for _, sc := range c.Sampling {
		t.Run(sc.Name, func(t *testing.T) {
			args := []string{"sample", "--model", c.Dir, "--tokens", tokensArg(sc.Prompts),
				"-n", fmt.Sprint(sc.NumTokens), "--temperature", "0", "--json"}
			if sc.Ablate != "" {
				args = append(args, "--ablate", sc.Ablate)
			}
			out, err := runCLI(t, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var res struct {
				Tokens  [][]int  `json:"tokens"`
				Strings []string `json:"strings"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !reflect.DeepEqual(res.Tokens, sc.Tokens) {
				t.Errorf("tokens %v, want %v", res.Tokens, sc.Tokens)
			}
			if res.Strings != nil || !strings.Contains(out, `"strings": null`) {
				t.Errorf("strings %q, want null without a tokenizer\n%s", res.Strings, out)
			}
		})
	}
}
