package main

import (
	"fmt"

	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/runtime"
	"github.com/urfave/cli/v2"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure throughput of the whole model as one graph against the per-block paths (no hooks, one writing hook, every point read, one session per stage) and decoding, interleaved in rounds; then the per-block model's peak memory with all its plans",
		Flags: []cli.Flag{
			modelFlag(),
			&cli.BoolFlag{Name: "random-gpt2-small", Usage: "benchmark a random GPT-2-small-shaped model (exported once into the cache)"},
			&cli.StringFlag{Name: "shapes", Value: "1x16,1x128,4x128,1x1024", Usage: "batch x tokens, comma-separated"},
			&cli.StringFlag{Name: "paths", Value: "whole,no-hooks,one-write,all-read,capture,per-stage,stage-read", Usage: "which paths to run: whole (the baseline), no-hooks, one-write (an in-place writing hook at mlp.post_act of the middle layer), all-read (a read-only observer at every hook point), capture (every hook point copied out, as --save-activations does), per-stage (a writing hook at every stage boundary: one session per stage, the residual stream through Go), stage-read (a read-only observer of a small point at every layer: one session per stage, the residual stream kept where the sessions run)"},
			&cli.DurationFlag{Name: "min-time", Value: 10 * time.Second, Usage: "least time spent per shape, in rounds that run every path once in turn (after a warm-up run of each)"},
			&cli.IntFlag{Name: "min-runs", Value: 3, Usage: "least number of rounds per shape"},
			&cli.StringFlag{Name: "sample", Value: "1,4", Usage: "batch sizes of the decoding rows (16-token prompt, 32 new tokens, KV cache); empty for none"},
		},
		Action:      runBench,
		Subcommands: []*cli.Command{benchHarvestCommand()},
	}
}

// benchModel opens --model, or a random GPT-2-small export in the cache.
func benchModel(c *cli.Context) (*modelctx.Transformer, string, error) {
	if c.Bool("random-gpt2-small") {
		cache, err := fetch.New(fetchOptions(c))
		if err != nil {
			return nil, "", err
		}
		dir := filepath.Join(cache.Dir(), "exported", "random", "gpt2-small-seed1")
		if m, err := export.ReadManifest(dir); err != nil || m.GraphsVersion < export.GPT2GraphsVersion {
			fmt.Fprintf(c.App.ErrWriter, "exporting a random GPT-2-small-shaped model to %s (once)...\n", dir)
			o := export.WriteOptions{Name: "random-gpt2-small", Whole: true, Overwrite: export.IsExported(dir)}
			if _, err := export.WriteGPT2(export.RandomGPT2{Config: export.GPT2Small, Seed: 1}, dir, o); err != nil {
				return nil, "", err
			}
		}
		if err := c.Set("model", dir); err != nil {
			return nil, "", err
		}
	}
	m, err := openModel(c)
	if err != nil {
		return nil, "", err
	}
	return m, m.Dir(), nil
}

type benchShape struct{ B, T int }

func parseShapes(s string) ([]benchShape, error) {
	var out []benchShape
	for _, part := range strings.Split(s, ",") {
		b, t, ok := strings.Cut(strings.TrimSpace(part), "x")
		bi, err1 := strconv.Atoi(b)
		ti, err2 := strconv.Atoi(t)
		if !ok || err1 != nil || err2 != nil || bi <= 0 || ti <= 0 {
			return nil, fmt.Errorf("--shapes: %q is not BxT", part)
		}
		out = append(out, benchShape{bi, ti})
	}
	return out, nil
}

// peakRSS reads the process's peak resident set size (VmHWM) in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// interleaved times several workloads in rounds, each round running every
// workload once in turn, so that drifts in machine speed hit all of them
// alike; ratios between them are what the benchmark reports. Each workload
// runs once first as a warm-up (which also builds its plan). It stops after
// minRuns rounds once minTime has passed, and returns each workload's total
// time and the number of rounds.
func interleaved(minTime time.Duration, minRuns int, fns []func() error) ([]time.Duration, int, error) {
	for _, fn := range fns {
		if err := fn(); err != nil {
			return nil, 0, err
		}
	}
	total := make([]time.Duration, len(fns))
	start := time.Now()
	rounds := 0
	for ; rounds < minRuns || time.Since(start) < minTime; rounds++ {
		for i, fn := range fns {
			t0 := time.Now()
			if err := fn(); err != nil {
				return nil, 0, err
			}
			total[i] += time.Since(t0)
		}
	}
	return total, rounds, nil
}

func benchRows(s benchShape, nVocab int) [][]int {
	rows := make([][]int, s.B)
	for b := range rows {
		rows[b] = make([]int, s.T)
		for i := range rows[b] {
			rows[b][i] = (1000 + 7919*(b*s.T+i)) % nVocab
		}
	}
	return rows
}

// benchPaths builds the forward options of each measured path.
func benchPaths(m *modelctx.Transformer) map[string][]modelctx.ForwardOption {
	n := m.NLayers()
	oneWrite := hooks.New()
	oneWrite.Add(hooks.MLP.PostAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		x.Data[0] += 0 // a writing hook that edits the tensor in place
		return x, nil
	}, hooks.AtLayers(n/2))
	allRead := hooks.New()
	for _, p := range hooks.Points() {
		allRead.Observe(p, func(*hooks.Context, *hooks.Tensor) error { return nil })
	}
	perStage := hooks.New()
	identity := func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) { return x, nil }
	perStage.Add(hooks.Resid.PostEmb, identity)
	perStage.Add(hooks.Resid.Torso.PostMLP, identity)
	// A small point read at every layer: the plan is cut at every stage
	// boundary, but the residual stream between the stages is not handed to
	// Go (on CUDA it stays on the GPU), only the [B,T,1] scale is.
	stageRead := hooks.New()
	stageRead.Observe(hooks.LnAttnScale, func(*hooks.Context, *hooks.Tensor) error { return nil })
	return map[string][]modelctx.ForwardOption{
		"stage-read": {modelctx.WithHooks(stageRead)},
		"no-hooks":   nil,
		"one-write":  {modelctx.WithHooks(oneWrite)},
		"all-read":   {modelctx.WithHooks(allRead)},
		"per-stage":  {modelctx.WithHooks(perStage)},
		"capture":    {modelctx.Capture(modelctx.AllPoints)},
	}
}

// benchGroup is one shape (or decoding batch) and what each path runs.
type benchGroup struct {
	name   string
	tokens int // tokens per run
	paths  []string
	runs   map[string]func(m *modelctx.Transformer) error
}

// runBench first runs every path once on the per-block model alone, shape by
// shape, reporting its peak memory with all plans in use (this also builds
// the plans); then it opens the exported model as one plain graph (the
// baseline) and times it against every path in interleaved rounds.
func runBench(c *cli.Context) error {
	shapes, err := parseShapes(c.String("shapes"))
	if err != nil {
		return err
	}
	var paths []string
	for _, p := range strings.Split(c.String("paths"), ",") {
		if p = strings.TrimSpace(p); p != "" && p != "whole" {
			paths = append(paths, p)
		}
	}
	var batches []int
	for _, b := range strings.Split(c.String("sample"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			n, err := strconv.Atoi(b)
			if err != nil || n <= 0 {
				return fmt.Errorf("--sample: %q is not a batch size", b)
			}
			batches = append(batches, n)
		}
	}
	m, dir, err := benchModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	man := m.Manifest()
	w := c.App.Writer
	ctx := c.Context
	_, libVersion := runtime.Library()
	spin := "spinning"
	if !runtime.GlobalSpin() {
		spin = "no spinning"
	}
	fmt.Fprintf(w, "model %s: %d layers, d_model %d, weights %.0f MB; onnxruntime %s, %s, %d threads (%s), %d CPUs\n",
		man.Name, man.Config.NLayers, man.Config.DModel, float64(man.Weights.Bytes)/1e6, libVersion,
		m.Engine().Options().Device, threadsOf(m), spin, goruntime.NumCPU())
	opts := benchPaths(m)
	for _, p := range paths {
		if _, ok := opts[p]; !ok {
			return fmt.Errorf("--paths: unknown path %q", p)
		}
	}

	var groups []benchGroup
	for _, s := range shapes {
		if s.T > man.Config.NCtx {
			fmt.Fprintf(w, "%s skipped: longer than the context window %d\n", s, man.Config.NCtx)
			continue
		}
		rows := benchRows(s, man.Config.NVocab)
		g := benchGroup{name: s.String(), tokens: s.B * s.T, runs: map[string]func(*modelctx.Transformer) error{}}
		for _, p := range append([]string{"whole"}, paths...) {
			fo := opts[p]
			g.paths = append(g.paths, p)
			g.runs[p] = func(model *modelctx.Transformer) error { _, err := model.Forward(ctx, rows, fo...); return err }
		}
		groups = append(groups, g)
	}
	for _, b := range batches {
		prompt := benchRows(benchShape{b, 16}, man.Config.NVocab)
		g := benchGroup{name: sampleKey(b), tokens: b * 32, runs: map[string]func(*modelctx.Transformer) error{}}
		for _, p := range []string{"whole", "no-hooks", "one-write"} {
			if p != "whole" && !contains(paths, p) {
				continue
			}
			so := []modelctx.SampleOption{modelctx.WithNumTokens(32), modelctx.WithSeed(1)}
			for _, o := range opts[p] {
				so = append(so, o)
			}
			g.paths = append(g.paths, p)
			g.runs[p] = func(model *modelctx.Transformer) error {
				_, err := model.Sample(ctx, modelctx.TokenPrompts(prompt...), so...)
				return err
			}
		}
		groups = append(groups, g)
	}

	// Memory of the per-block model alone, every plan so far in use.
	resetPeakRSS()
	weights := m.Engine().WeightBytes()
	fmt.Fprintf(w, "\npeak RSS of the per-block model (weights %.0f MB) after running every path, cumulative:\n", float64(weights)/1e6)
	for _, g := range groups {
		for _, p := range g.paths[1:] {
			if err := g.runs[p](m); err != nil {
				return fmt.Errorf("%s %s: %w", p, g.name, err)
			}
		}
		peak := peakRSS()
		fmt.Fprintf(w, "  up to %-12s %8.0f MB = %.2f x the weights\n", g.name, float64(peak)/1e6, float64(peak)/float64(weights))
	}

	// Throughput against the baseline.
	whole, err := openWhole(c, dir)
	if err != nil {
		return err
	}
	defer whole.Close()
	fmt.Fprintf(w, "\n%-12s %-10s %12s %10s\n", "shape", "path", "tokens/s", "vs whole")
	for _, g := range groups {
		var fns []func() error
		for _, p := range g.paths {
			model, run := m, g.runs[p]
			if p == "whole" {
				model = whole
			}
			fns = append(fns, func() error { return run(model) })
		}
		total, rounds, err := interleaved(c.Duration("min-time"), c.Int("min-runs"), fns)
		if err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		for i, p := range g.paths {
			ratio := "-"
			if i > 0 {
				ratio = fmt.Sprintf("%.3f", total[0].Seconds()/total[i].Seconds())
			}
			fmt.Fprintf(w, "%-12s %-10s %12.1f %10s\n", g.name, p, float64(g.tokens*rounds)/total[i].Seconds(), ratio)
		}
	}
	return nil
}

func (s benchShape) String() string { return fmt.Sprintf("%dx%d", s.B, s.T) }

func sampleKey(batch int) string { return fmt.Sprintf("decode b%d", batch) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

// resetPeakRSS resets the kernel's peak-RSS counter (VmHWM) of this process.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func threadsOf(m *modelctx.Transformer) int {
	if n := m.Engine().Options().Threads; n > 0 {
		return n
	}
	return runtime.GlobalThreads()
}

// openWhole opens the exported model's one-graph copy as its own model: the
// baseline a plain ONNX Runtime session gives.
func openWhole(c *cli.Context, dir string) (*modelctx.Transformer, error) {
	dev, id, err := runtime.ParseDevice(c.String("device"))
	if err != nil {
		return nil, err
	}
	return modelctx.OpenWhole(dir, modelctx.WithDevice(dev, id))
}
