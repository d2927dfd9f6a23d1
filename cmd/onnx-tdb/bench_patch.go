package main

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/analysis"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/urfave/cli/v2"
)

// patchSweepFlag selects the activation-patching benchmark of bench.
const patchSweepFlag = "patch-sweep"

// runPatchBench times a residual patching sweep (every layer x 16
// positions of resid.torso.post_mlp, 1x16 prompts) against the same number
// of rows run as batched 1x16 forwards with no hooks (batches of the
// sweep's size), against one forward per patched run, and against the
// sweep made of whole passes (no partial runs); they run in interleaved
// rounds after a warm-up each.
func runPatchBench(c *cli.Context) error {
	t, _, err := benchModel(c)
	if err != nil {
		return err
	}
	defer t.Close()
	m, err := analysis.New(t)
	if err != nil {
		return err
	}
	defer m.Close()
	ctx := c.Context
	man := t.Manifest()
	const T = 16
	clean := benchRows(benchShape{1, T}, man.Config.NVocab)[0]
	corrupted := append([]int(nil), clean...)
	for _, p := range []int{2, 5, 9} {
		corrupted[p] = (corrupted[p] + 1) % man.Config.NVocab
	}
	spec := analysis.PatchSpec{Clean: clean, Corrupted: corrupted, Point: hooks.PostMLP, Per: analysis.PerPosition,
		Metric: analysis.Metric{Kind: analysis.LogitDiff, Target: 11, Distractor: 13}, MaxBatch: c.Int("batch")}
	cells := t.NLayers() * T
	batch := spec.MaxBatch
	if batch <= 0 {
		batch = analysis.DefaultMaxBatch
	}
	fmt.Fprintf(c.App.Writer, "patching sweep of %s: %d layers x %d positions = %d patched runs (batches of %d), on %s\n",
		man.Name, t.NLayers(), T, cells, batch, t.Engine().Options().Provider.Name)
	sweep := func() error { _, err := m.Patch(ctx, spec); return err }
	whole := spec
	whole.FullPasses = true
	sweepWhole := func() error { _, err := m.Patch(ctx, whole); return err }
	batched := func() error {
		for lo := 0; lo < cells; lo += batch {
			rows := make([][]int, min(batch, cells-lo))
			for i := range rows {
				rows[i] = corrupted
			}
			if _, err := t.Forward(ctx, rows); err != nil {
				return err
			}
		}
		return nil
	}
	separate := func() error {
		for i := 0; i < cells; i++ {
			if _, err := t.Forward(ctx, [][]int{corrupted}); err != nil {
				return err
			}
		}
		return nil
	}
	names := []string{"sweep (batched, partial runs)", fmt.Sprintf("%d rows as batched 1x%d forwards", cells, T),
		fmt.Sprintf("%d separate 1x%d forwards", cells, T), "sweep (batched, whole passes)"}
	stop := benchStopOf(c)
	stop.minTime, stop.maxTime = 0, 0 // --min-runs rounds: each is long
	if !c.IsSet("min-runs") {
		stop.minRuns = 2
	}
	b, err := interleaved(stop, []func() error{sweep, batched, separate, sweepWhole})
	if err != nil {
		return err
	}
	med := func(i int) float64 { return b.medianTime(i).Seconds() }
	fmt.Fprintf(c.App.Writer, "%-36s %10s %12s\n", "workload", "s/round", "vs sweep")
	for i, n := range names {
		fmt.Fprintf(c.App.Writer, "%-36s %10.3f %12.3f\n", n, med(i), med(i)/med(0))
	}
	fmt.Fprintf(c.App.Writer, "sweep / batched forwards = %.3f (goal <= 1.3), with whole passes %.3f; medians of %d rounds\n",
		med(0)/med(1), med(3)/med(1), len(b.times))
	return nil
}
