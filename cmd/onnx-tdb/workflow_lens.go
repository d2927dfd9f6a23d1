package main

import (
	"fmt"
	"io"

	"github.com/onnx-tdb/onnx-tdb/analysis"
	"github.com/urfave/cli/v2"
)

func lensCommand() *cli.Command {
	return &cli.Command{
		Name:  "lens",
		Usage: "logit lens: the residual stream after the embedding and after each layer through the final norm and the unembedding; top tokens per layer and position, and the target's logit, probability and rank",
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "prompt", Usage: "the prompt (tokenized with no BOS token)"},
			&cli.StringFlag{Name: "target", Usage: "token to follow: its text with the leading space or #ID; must be one token"},
			&cli.IntFlag{Name: "k", Value: 5, Usage: "top tokens per layer and position"},
			&cli.BoolFlag{Name: "json", Usage: "print top_ids [L+1,T,k] (their lens logits as best_values), target_logit, target_prob, target_rank [L+1,T] as JSON"},
		},
		Action: runLens,
	}
}

func runLens(c *cli.Context) error {
	return withAnalysis(c, func(m *analysis.Model) error {
		toks, err := promptFlag(c, m.T, "prompt")
		if err != nil {
			return err
		}
		opt := analysis.LensOptions{K: c.Int("k")}
		if opt.K <= 0 {
			return fmt.Errorf("-k %d: want a positive count", opt.K)
		}
		if c.IsSet("target") {
			if opt.Target, err = tokenFlag(m.T, "target", c.String("target")); err != nil {
				return err
			}
			opt.HasTarget = true
		}
		res, err := m.Lens(c.Context, toks, opt)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			out := map[string]any{"rows": res.Labels, "tokens": toks, "top_ids": res.TopIDs, "best_values": res.TopLogits}
			if opt.HasTarget {
				out["target"] = opt.Target
				out["target_logit"], out["target_prob"], out["target_rank"] = res.TargetLogit, res.TargetProb, res.TargetRank
			}
			return printJSON(c, out)
		}
		printLens(c.App.Writer, res, tokenTexts(m.T, toks), m, opt)
		return nil
	})
}

func printLens(w io.Writer, res *analysis.LensResult, toks []string, m *analysis.Model, opt analysis.LensOptions) {
	fmt.Fprintf(w, "logit lens: top-1 token per row and position\n%-26s", "row \\ position")
	for _, t := range toks {
		fmt.Fprintf(w, " %12.12s", t)
	}
	fmt.Fprintln(w)
	for r, label := range res.Labels {
		fmt.Fprintf(w, "%-26s", label)
		for p := range res.TopIDs[r] {
			fmt.Fprintf(w, " %12.12s", tokenTexts(m.T, res.TopIDs[r][p][:1])[0])
		}
		fmt.Fprintln(w)
	}
	T := len(toks)
	fmt.Fprintf(w, "\nlast position: top %d per row\n", opt.K)
	for r, label := range res.Labels {
		fmt.Fprintf(w, "%-26s", label)
		names := tokenTexts(m.T, res.TopIDs[r][T-1])
		for j, n := range names {
			fmt.Fprintf(w, " %s %.4g", n, res.TopLogits[r][T-1][j])
		}
		fmt.Fprintln(w)
	}
	if !opt.HasTarget {
		return
	}
	fmt.Fprintf(w, "\ntarget %s at the last position\n%-26s %12s %12s %8s\n", tokenTexts(m.T, []int{opt.Target})[0], "row", "logit", "prob", "rank")
	for r, label := range res.Labels {
		fmt.Fprintf(w, "%-26s %12.5g %12.5g %8d\n", label, res.TargetLogit[r][T-1], res.TargetProb[r][T-1], res.TargetRank[r][T-1])
	}
}
