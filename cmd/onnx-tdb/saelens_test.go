package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// saelensCheck is one CLI call of the saelens golden set and what it must
// write (or, with SameAs, two calls that must agree).
type saelensCheck struct {
	ID      string   `json:"id"`
	Argv    []string `json:"argv"`
	SameAs  []string `json:"same_as"`
	File    string   `json:"file"`
	Last    []int    `json:"last_real_position"`
	MaxAbs  float64  `json:"max_abs"`
	Outputs []struct {
		File    string  `json:"file"`
		Want    string  `json:"want"`
		Shape   []int   `json:"want_shape"`
		MaxAbs  float64 `json:"max_abs"`
		Compare string  `json:"compare"`
		Last    []int   `json:"last_real_position"`
	} `json:"outputs"`
}

// TestSAELensGoldenCLI runs every CLI check of the saelens golden set:
// sae encode, forward --sae with and without the error term and with a
// latent ablated, for each SAELens SAE, transcoder and the v5 SAE, and
// the TransformerLens-named --ablate flags.
func TestSAELensGoldenCLI(t *testing.T) {
	dir := golden.RequireShared(t, "saelens")
	shared := filepath.Dir(dir)
	b, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases struct {
		Checks []saelensCheck `json:"checks"`
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases.Checks) < 60 {
		t.Fatalf("%d checks, want the full set", len(cases.Checks))
	}
	outs := map[string]string{} // check id -> its output folder
	root := t.TempDir()
	for i, ck := range cases.Checks {
		if ck.SameAs != nil {
			continue
		}
		t.Run(ck.ID, func(t *testing.T) {
			out := filepath.Join(root, fmt.Sprint(i))
			outs[ck.ID] = out
			args := make([]string, 0, len(ck.Argv))
			for _, a := range ck.Argv[1:] {
				a = strings.ReplaceAll(a, "{golden}", shared)
				a = strings.ReplaceAll(a, "{saelens}", dir)
				a = strings.ReplaceAll(a, "{out}", out)
				args = append(args, a)
			}
			if msg, err := runCLI(t, args...); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, msg)
			}
			for _, o := range ck.Outputs {
				shape, got := readNpy(t, filepath.Join(out, o.File))
				if o.Compare == "last_real_position" {
					got = lastRows(shape, got, o.Last)
				}
				want, err := golden.ReadFile(filepath.Join(shared, o.Want))
				if err != nil {
					t.Fatal(err)
				}
				if worst, fail := golden.Diff(got, want, golden.Tolerance(o.MaxAbs)); fail != "" {
					t.Errorf("%s: %s (worst %.3g)", o.File, fail, worst)
				}
			}
		})
	}
	for _, ck := range cases.Checks {
		if ck.SameAs == nil {
			continue
		}
		t.Run(ck.ID, func(t *testing.T) {
			var rows [2][]float32
			for i, id := range ck.SameAs {
				if outs[id] == "" {
					t.Fatalf("check %s did not run", id)
				}
				shape, v := readNpy(t, filepath.Join(outs[id], ck.File))
				rows[i] = lastRows(shape, v, ck.Last)
			}
			if worst, fail := golden.Diff(rows[0], rows[1], golden.Tolerance(ck.MaxAbs)); fail != "" {
				t.Errorf("%v disagree: %s (worst %.3g)", ck.SameAs, fail, worst)
			}
		})
	}
}
