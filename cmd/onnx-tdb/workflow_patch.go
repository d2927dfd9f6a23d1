package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/analysis"
	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/urfave/cli/v2"
)

func patchCommand() *cli.Command {
	return &cli.Command{
		Name:  "patch",
		Usage: "activation patching: run the corrupted prompt with one slice of a point replaced by the clean run's value, for every layer x position (or head, or layer), and report a metric at the last position",
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "clean", Usage: "the clean prompt (tokenized with no BOS token)"},
			&cli.StringFlag{Name: "corrupted", Usage: "the corrupted prompt, of the same token length"},
			&cli.StringFlag{Name: "point", Usage: "hook point to patch, swept over every layer (resid.torso.post_mlp, attn.v_out, ...; a TransformerLens name sweeps its point kind), or POINT@LAYER for one layer"},
			&cli.StringFlag{Name: "layers", Usage: "only these layers, comma-separated (default: every layer)"},
			&cli.StringFlag{Name: "per", Value: "position", Usage: "what one patched run replaces: position ([:, p]; every head at p), head (one head at every position) or layer (the whole tensor)"},
			&cli.StringFlag{Name: "target", Usage: "target token: its text with the leading space (\" Mary\") or #ID; must be one token"},
			&cli.StringFlag{Name: "distractor", Usage: "distractor token for --metric logit-diff (same form as --target)"},
			&cli.StringFlag{Name: "metric", Value: "logit-diff", Usage: "logit-diff (logit[target] - logit[distractor]), logit (logit[target]) or prob (softmax[target])"},
			&cli.IntFlag{Name: "batch", Value: analysis.DefaultMaxBatch, Usage: "patched runs per forward pass"},
			&cli.BoolFlag{Name: "json", Usage: "print {table, normalized, clean, corrupted, ...} as JSON"},
			&cli.StringFlag{Name: "save", Usage: "write the raw table to FILE.npy and the normalised one to FILE.normalized.npy"},
		},
		Action: runPatch,
	}
}

func runPatch(c *cli.Context) error {
	return withAnalysis(c, func(m *analysis.Model) error {
		spec, err := patchSpec(c, m)
		if err != nil {
			return err
		}
		res, err := m.Patch(c.Context, spec)
		if err != nil {
			return err
		}
		if path := c.String("save"); path != "" {
			if err := savePatch(path, res); err != nil {
				return err
			}
		}
		if c.Bool("json") {
			return printJSON(c, patchJSON(res))
		}
		printPatch(c.App.Writer, res, tokenTexts(m.T, spec.Clean))
		return nil
	})
}

// patchSpec reads the flags of patch.
func patchSpec(c *cli.Context, m *analysis.Model) (analysis.PatchSpec, error) {
	var spec analysis.PatchSpec
	var err error
	if spec.Clean, err = promptFlag(c, m.T, "clean"); err != nil {
		return spec, err
	}
	if spec.Corrupted, err = promptFlag(c, m.T, "corrupted"); err != nil {
		return spec, err
	}
	if len(spec.Clean) != len(spec.Corrupted) {
		return spec, fmt.Errorf("%w: --clean is %d tokens, --corrupted %d", analysis.ErrTokenLength, len(spec.Clean), len(spec.Corrupted))
	}
	if spec.Point, spec.Layers, err = parsePoint(m.T, c.String("point")); err != nil {
		return spec, err
	}
	if ls, err := parseLayers(c.String("layers")); err != nil {
		return spec, err
	} else if ls != nil {
		spec.Layers = ls
	}
	if spec.Per, err = analysis.ParsePer(c.String("per")); err != nil {
		return spec, fmt.Errorf("--per: %w", err)
	}
	if spec.Metric, err = metricFlags(c, m); err != nil {
		return spec, err
	}
	spec.MaxBatch = c.Int("batch")
	return spec, nil
}

// metricFlags reads --metric, --target and --distractor.
func metricFlags(c *cli.Context, m *analysis.Model) (analysis.Metric, error) {
	var mt analysis.Metric
	var err error
	if mt.Kind, err = analysis.ParseMetricKind(c.String("metric")); err != nil {
		return mt, fmt.Errorf("--metric: %w", err)
	}
	if !c.IsSet("target") {
		return mt, fmt.Errorf("--target is required")
	}
	if mt.Target, err = tokenFlag(m.T, "target", c.String("target")); err != nil {
		return mt, err
	}
	if mt.Kind == analysis.LogitDiff {
		if !c.IsSet("distractor") {
			return mt, fmt.Errorf("--metric logit-diff needs --distractor (or use --metric logit)")
		}
		if mt.Distractor, err = tokenFlag(m.T, "distractor", c.String("distractor")); err != nil {
			return mt, err
		}
	}
	return mt, nil
}

// patchShape is the table's shape: [layers] for --per layer, else
// [layers, columns].
func patchShape(res *analysis.PatchResult) []int {
	if res.Per == analysis.PerLayer {
		return []int{len(res.Layers)}
	}
	return []int{len(res.Layers), res.Cols}
}

func flatten(rows [][]float64) []float32 {
	var out []float32
	for _, r := range rows {
		for _, v := range r {
			out = append(out, float32(v))
		}
	}
	return out
}

func savePatch(path string, res *analysis.PatchResult) error {
	if err := npy.Write(path, patchShape(res), flatten(res.Raw)); err != nil {
		return err
	}
	return npy.Write(strings.TrimSuffix(path, ".npy")+".normalized.npy", patchShape(res), flatten(res.Normalized))
}

// patchJSON is what --json prints: tables layer-major ([layers] for --per
// layer).
func patchJSON(res *analysis.PatchResult) map[string]any {
	table, norm := any(res.Raw), any(res.Normalized)
	if res.Per == analysis.PerLayer {
		table, norm = column(res.Raw), column(res.Normalized)
	}
	return map[string]any{
		"point": res.Point.Path(), "per": res.Per.String(), "metric": res.Metric.String(),
		"layers": res.Layers, "table": table, "normalized": norm,
		"clean": res.Clean, "corrupted": res.Corrupted,
	}
}

func column(rows [][]float64) []float64 {
	out := make([]float64, len(rows))
	for i, r := range rows {
		out[i] = r[0]
	}
	return out
}

func printPatch(w io.Writer, res *analysis.PatchResult, toks []string) {
	fmt.Fprintf(w, "patching %s per %s, metric %s: clean %.6g, corrupted %.6g\n", res.Point, res.Per, res.Metric, res.Clean, res.Corrupted)
	var cols []string
	for j := 0; j < res.Cols; j++ {
		switch res.Per {
		case analysis.PerPosition:
			tok := ""
			if j < len(toks) {
				tok = toks[j]
			}
			cols = append(cols, fmt.Sprintf("%d %s", j, tok))
		case analysis.PerHead:
			cols = append(cols, fmt.Sprintf("H%d", j))
		default:
			cols = append(cols, "whole")
		}
	}
	for _, tbl := range []struct {
		name string
		rows [][]float64
	}{{"raw", res.Raw}, {"normalised (patched - corrupted) / (clean - corrupted)", res.Normalized}} {
		fmt.Fprintf(w, "\n%s\n%-6s", tbl.name, "layer")
		for _, h := range cols {
			fmt.Fprintf(w, " %12.12s", h)
		}
		fmt.Fprintln(w)
		for i, l := range res.Layers {
			name := fmt.Sprintf("L%d", l)
			if l < 0 {
				name = "-"
			}
			fmt.Fprintf(w, "%-6s", name)
			for _, v := range tbl.rows[i] {
				fmt.Fprintf(w, " %12.5g", v)
			}
			fmt.Fprintln(w)
		}
	}
}
