package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// goldenSampleFlags are the CLI flags of a golden sampling case's hooks.
func goldenSampleFlags(t *testing.T, sc golden.Sampling) []string {
	t.Helper()
	switch sc.Hooks {
	case "":
		return nil
	case "mlp.post_act fwd hook at layer 1: set neuron 7 to 0 (all positions)":
		return []string{"--ablate", "mlp.post_act@1:7"}
	}
	t.Fatalf("golden case %s: unknown hooks %q", sc.Name, sc.Hooks)
	return nil
}

func TestSampleGoldenJSON(t *testing.T) {
	c := golden.Load(t)
	for _, sc := range c.Sampling {
		t.Run(sc.Name, func(t *testing.T) {
			args := []string{"sample", "--model", golden.ModelDir(), "-n", "8", "--temperature", "0", "--json"}
			for _, p := range sc.Prompts {
				args = append(args, "--prompt", p)
			}
			args = append(args, goldenSampleFlags(t, sc)...)
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
			if !reflect.DeepEqual(res.Tokens, sc.Tokens) || !reflect.DeepEqual(res.Strings, sc.Strings) {
				t.Errorf("got %v %q\nwant %v %q", res.Tokens, res.Strings, sc.Tokens, sc.Strings)
			}
		})
	}
}

func TestSampleText(t *testing.T) {
	c := golden.Load(t)
	batch, single := c.Sampling[0], c.Sampling[1]
	// One prompt streams: the prompt, then the continuation, then a newline.
	args := append([]string{"sample", "--model", golden.ModelDir(), "-n", "8", "--temperature", "0", "--prompt", single.Prompts[0]}, goldenSampleFlags(t, single)...)
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := single.Prompts[0] + single.Strings[0] + "\n"; out != want {
		t.Errorf("single prompt printed %q, want %q", out, want)
	}
	// Several prompts, given as tokens: one line per row at the end.
	out, err = runCLI(t, "sample", "--model", golden.ModelDir(), "-n", "8", "--temperature", "0", "--tokens", tokensArg(batch.PromptTokens))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := batch.Prompts[0] + batch.Strings[0] + "\n" + batch.Prompts[1] + batch.Strings[1] + "\n"
	if out != want {
		t.Errorf("batch printed %q, want %q", out, want)
	}
}

func TestSampleSeedAndTopP(t *testing.T) {
	run := func(seed string) string {
		out, err := runCLI(t, "sample", "--model", golden.ModelDir(), "--prompt", "Hello", "-n", "10", "--top-p", "0.9", "--temperature", "0.8", "--seed", seed, "--json", "--stop-at-eot")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	if a, b := run("11"), run("11"); a != b {
		t.Errorf("same seed, different output:\n%s\n%s", a, b)
	}
}

func TestSampleCLIErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want error  // when set, errors.Is
		text string // else a substring of the message
	}{
		{[]string{"-n", "70", "--prompt", "Hello"}, modelctx.ErrTooLong, ""},
		{[]string{"--tokens", "1,50257"}, modelctx.ErrTokenOutOfRange, ""},
		{[]string{"--prompt", "a", "--top-p", "2"}, modelctx.ErrBadSampleOption, ""},
		{[]string{"--prompt", "a", "--temperature", "-1"}, modelctx.ErrBadSampleOption, ""},
		{[]string{"--prompt", "a<|endoftext|>"}, nil, "disallowed special token"},
		{[]string{"--prompt", "a", "--tokens", "1"}, nil, "not both"},
		{[]string{}, nil, "give --prompt or --tokens"},
		{[]string{"--prompt", "a", "--ablate", "mlp.post_act@5:7"}, nil, "out of range"},
	} {
		args := append([]string{"sample", "--model", golden.ModelDir()}, tc.args...)
		out, err := runCLI(t, args...)
		switch {
		case err == nil:
			t.Errorf("%v: no error\n%s", tc.args, out)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%v: got %v, want %v", tc.args, err, tc.want)
		case tc.want == nil && !strings.Contains(err.Error(), tc.text):
			t.Errorf("%v: got %v, want it to mention %q", tc.args, err, tc.text)
		}
	}
}

// TestSampleWithSAE splices an SAE into every step of sampling: with
// add_error and no latent edit the pass is unchanged, so greedy decoding
// gives the golden tokens; replacing the activation changes them.
func TestSampleWithSAE(t *testing.T) {
	c := golden.Load(t)
	sc := c.Sampling[0]
	info := c.SAEs["mlp_post_act"]
	splice := fmt.Sprintf("%s@%d=%s", info.Location, info.Layer, saeGoldenFile(info))
	run := func(extra ...string) [][]int {
		args := []string{"sample", "--model", golden.ModelDir(), "-n", "8", "--temperature", "0", "--json", "--sae", splice}
		for _, p := range sc.Prompts {
			args = append(args, "--prompt", p)
		}
		out, err := runCLI(t, append(args, extra...)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var res struct {
			Tokens [][]int `json:"tokens"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return res.Tokens
	}
	if got := run(); !reflect.DeepEqual(got, sc.Tokens) {
		t.Errorf("add_error splice changed greedy tokens: %v, want %v", got, sc.Tokens)
	}
	if got := run("--sae-replace"); reflect.DeepEqual(got, sc.Tokens) {
		t.Errorf("replacing mlp.post_act@%d by the reconstruction left every token unchanged", info.Layer)
	}
}
