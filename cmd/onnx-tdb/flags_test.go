package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/urfave/cli/v2"
)

// TestCountFlagsValidated: negative or absurd counts are errors that name the
// flag, not panics (forward --top -1 used to panic in a slice expression).
func TestCountFlagsValidated(t *testing.T) {
	for _, args := range [][]string{
		{"forward", "--top", "-1", "--tokens", "1"},
		{"forward", "-k", "-5", "--tokens", "1"},
		{"attribute", "--top", "-3", "--tokens", "1", "--target", "0,last,1"},
		{"sae", "top", "--sae", "x.pt", "--at", "mlp.post_act@0", "-k", "-1", "--tokens", "1"},
		{"sae", "top", "--sae", "x.pt", "--at", "mlp.post_act@0", "-n", "-1", "--tokens", "1"},
		{"sample", "-n", "-2", "--tokens", "1"},
		{"bench", "--min-runs", "0"},
		{"random-checkpoint", "-o", filepath.Join(t.TempDir(), "x"), "--layers", "-1"},
		{"random-checkpoint", "-o", filepath.Join(t.TempDir(), "y"), "--layers", "0"},
		{"forward", "-m", golden.ModelDir(), "--top", "-1", "--tokens", "1"},
		{"forward", "--top", "100000000000", "--tokens", "1"},
	} {
		out, err := runCLI(t, args...)
		if err == nil {
			t.Errorf("%v accepted: %s", args, out)
			continue
		}
		flag := ""
		for _, a := range args {
			if strings.HasPrefix(a, "-") && a != "--tokens" && a != "--sae" && a != "--at" && a != "--target" && a != "-o" {
				flag = strings.TrimLeft(a, "-")
			}
		}
		if msg := err.Error(); !strings.Contains(msg, "--") || !strings.Contains(msg, "want") {
			t.Errorf("%v: error %q does not name the flag (%s) and its range", args, msg, flag)
		}
	}
}

// TestGlobalFlagsAfterCommand: --device, --cache, --threads, --no-spin and
// --blob-endpoint are accepted after the command name too, and a value given
// before the command reaches it.
func TestGlobalFlagsAfterCommand(t *testing.T) {
	var got map[string]string
	probe := func() *cli.Command {
		return &cli.Command{Name: "probe", Subcommands: []*cli.Command{{Name: "leaf", Action: func(c *cli.Context) error {
			got = map[string]string{}
			for _, n := range []string{"device", "cache", "blob-endpoint"} {
				got[n] = c.String(n)
			}
			return nil
		}}}}
	}
	run := func(args ...string) {
		t.Helper()
		app := newApp()
		app.Commands = append(app.Commands, withGlobals(probe()))
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		got = nil
		if err := app.RunContext(context.Background(), append([]string{"onnx-tdb"}, args...)); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	run("probe", "leaf", "--device", "cuda:1", "--cache", "/c", "--blob-endpoint", "http://e/{account}")
	if got["device"] != "cuda:1" || got["cache"] != "/c" || got["blob-endpoint"] != "http://e/{account}" {
		t.Errorf("after the command: %v", got)
	}
	run("--device", "cuda:2", "--cache", "/d", "probe", "leaf")
	if got["device"] != "cuda:2" || got["cache"] != "/d" {
		t.Errorf("before the command: %v", got)
	}
	run("--device", "cuda:2", "probe", "--device", "cuda:3", "leaf")
	if got["device"] != "cuda:3" {
		t.Errorf("the nearest one wins: %v", got)
	}
	run("probe", "leaf")
	if got["device"] != "cpu" {
		t.Errorf("default: %v", got)
	}
}

// TestSetNonFiniteRefused: --set with NaN or Inf is refused unless
// --allow-nonfinite is given.
func TestSetNonFiniteRefused(t *testing.T) {
	golden.RequireShared(t, "model")
	for _, v := range []string{"NaN", "Inf", "-inf"} {
		_, err := runCLI(t, "forward", "-m", golden.ModelDir(), "--tokens", "1,2", "--set", "mlp.post_act@0:1="+v)
		if err == nil || !strings.Contains(err.Error(), "not finite") {
			t.Errorf("--set ...=%s: %v", v, err)
		}
	}
	if out, err := runCLI(t, "forward", "-m", golden.ModelDir(), "--tokens", "1,2", "--set", "mlp.post_act@0:1=NaN", "--allow-nonfinite"); err != nil {
		t.Errorf("with --allow-nonfinite: %v\n%s", err, out)
	}
}

// TestForwardTextRough: --tokens rows are shown decoded, a one-token row
// says "1 token", and info --points gives shapes in dimension terms.
func TestForwardTextRough(t *testing.T) {
	golden.RequireShared(t, "model")
	out, err := runCLI(t, "forward", "-m", golden.ModelDir(), "--tokens", "15496;15496,11", "-k", "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`row 0 (1 token): "Hello"`, `row 1 (2 tokens): "Hello,"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = runCLI(t, "info", "-m", golden.ModelDir(), "--points")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "[batch seq d_ff=") || !strings.Contains(out, "heads=") {
		t.Errorf("info --points lacks dimension shapes:\n%s", out)
	}
}

// TestSampleTooLongSaysOneToken: a one-token prompt is "1 token".
func TestSampleTooLongSaysOneToken(t *testing.T) {
	golden.RequireShared(t, "model")
	_, err := runCLI(t, "sample", "-m", golden.ModelDir(), "--tokens", "1", "-n", "1000")
	if err == nil || !strings.Contains(err.Error(), "has 1 token and") {
		t.Errorf("err = %v", err)
	}
}
