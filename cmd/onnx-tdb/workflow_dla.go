package main

import (
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/onnx-tdb/onnx-tdb/analysis"
	"github.com/urfave/cli/v2"
)

func dlaCommand() *cli.Command {
	return &cli.Command{
		Name:  "dla",
		Usage: "direct logit attribution: the final residual stream split into embeddings, heads (or whole attention layers), attention biases and MLPs, each component's contribution to logit[target] (- logit[distractor]) at the last position, through the final norm with its scale frozen",
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "prompt", Usage: "the prompt (tokenized with no BOS token)"},
			&cli.StringFlag{Name: "target", Usage: "target token: its text with the leading space or #ID; must be one token"},
			&cli.StringFlag{Name: "distractor", Usage: "distractor token: attribute logit[target] - logit[distractor] (default: logit[target])"},
			&cli.StringFlag{Name: "per", Value: "head", Usage: "head (each head L{l}H{h} and L{l}.attn_bias) or layer (L{l}.attn)"},
			&cli.IntFlag{Name: "k", Value: 10, Usage: "print the k largest contributions (by magnitude); --json lists every one"},
			&cli.BoolFlag{Name: "json", Usage: "print {components: [{label, value}], total, actual} as JSON"},
		},
		Action: runDLA,
	}
}

func runDLA(c *cli.Context) error {
	return withAnalysis(c, func(m *analysis.Model) error {
		toks, err := promptFlag(c, m.T, "prompt")
		if err != nil {
			return err
		}
		per, err := analysis.ParsePer(c.String("per"))
		if err != nil || per == analysis.PerPosition {
			return fmt.Errorf("--per %q: want head or layer", c.String("per"))
		}
		metric := analysis.Metric{Kind: analysis.Logit}
		if !c.IsSet("target") {
			return fmt.Errorf("--target is required")
		}
		if metric.Target, err = tokenFlag(m.T, "target", c.String("target")); err != nil {
			return err
		}
		if c.IsSet("distractor") {
			metric.Kind = analysis.LogitDiff
			if metric.Distractor, err = tokenFlag(m.T, "distractor", c.String("distractor")); err != nil {
				return err
			}
		}
		cache, err := m.Run(c.Context, [][]int{toks})
		if err != nil {
			return err
		}
		dec, err := cache.DecomposeResid(c.Context, per)
		if err != nil {
			return err
		}
		attr, err := cache.LogitAttrs(dec, metric)
		if err != nil {
			return err
		}
		T := len(toks)
		values := attr.At(0, T-1)
		total := 0.0
		for _, v := range values {
			total += v
		}
		actual := float64(attr.Actual.Data[T-1])
		quantity := "logit[target]"
		if metric.Kind == analysis.LogitDiff {
			quantity = "logit[target] - logit[distractor]"
		}
		if c.Bool("json") {
			comps := make([]map[string]any, len(values))
			for i, v := range values {
				comps[i] = map[string]any{"label": attr.Labels[i], "value": v}
			}
			return printJSON(c, map[string]any{
				"quantity": quantity, "position": T - 1, "components": comps, "total": total, "actual": actual,
				"decomposition_max_error": dec.MaxError,
			})
		}
		printDLA(c.App.Writer, attr.Labels, values, c.Int("k"), quantity, total, actual)
		return nil
	})
}

func printDLA(w io.Writer, labels []string, values []float64, k int, quantity string, total, actual float64) {
	order := make([]int, len(values))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return math.Abs(values[order[a]]) > math.Abs(values[order[b]]) })
	if k > 0 && k < len(order) {
		order = order[:k]
	}
	fmt.Fprintf(w, "direct logit attribution of %s at the last position (final norm scale frozen)\n", quantity)
	for _, i := range order {
		fmt.Fprintf(w, "  %-16s %+12.5f\n", labels[i], values[i])
	}
	fmt.Fprintf(w, "  %-16s %+12.5f (%d components)\n  %-16s %+12.5f\n", "total", total, len(values), "model", actual)
}
