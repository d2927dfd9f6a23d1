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
	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"
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
			&cli.StringFlag{Name: "paths", Value: "whole,no-hooks,one-write,all-read,capture,views,per-stage,stage-read", Usage: "which paths to run: whole (the baseline), no-hooks, one-write (an in-place writing hook at mlp.post_act of the middle layer), all-read (a read-only observer at every hook point), capture (every hook point copied out into Go memory, as Forward with Capture does, the Output released after each run so the next copies into the same memory), views (every hook point handed out as views of ONNX Runtime's memory, released after each run, as forward --save-activations does), per-stage (a writing hook at every stage boundary: one session per stage, the residual stream through Go), stage-read (a read-only observer of a small point at every layer: one session per stage, the residual stream kept where the sessions run)"},
			&cli.DurationFlag{Name: "min-time", Value: 10 * time.Second, Usage: "least time spent per shape, in rounds that run every path once in turn (after a warm-up run of each)"},
			&cli.DurationFlag{Name: "max-time", Value: 60 * time.Second, Usage: "most time spent per shape: rounds stop here even if the medians are not yet within --precision"},
			countFlag("min-runs", nil, 7, 1, maxRuns, "least number of rounds per shape"),
			&cli.Float64Flag{Name: "precision", Value: 0.05, Usage: "rounds go on (up to --max-time) until every path's median ratio to whole is known within this relative half-width (95%); a ratio marked ! did not get there"},
			benchServeFlag(),
			&cli.BoolFlag{Name: patchSweepFlag, Usage: "instead, time a 16-position patching sweep of resid.torso.post_mlp over every layer against the same rows as batched 1x16 forwards and as separate forwards (--min-runs rounds)"},
			&cli.StringFlag{Name: "sample", Value: "1,4", Usage: "batch sizes of the decoding rows (16-token prompt, 32 new tokens, KV cache); empty for none"},
			&cli.BoolFlag{Name: "memory-only", Usage: "stop after the memory pass, printing the peak and resident set after each path"},
			countFlag("instances", nil, 3, 1, 8, "open the per-block model and the whole graph this many times each and let the rounds cycle through the pairs, so that no ratio rests on where one instance's memory happened to lie"),
			countFlag(processesFlag, nil, 1, 1, 16, "run the whole measurement in this many fresh processes, one after another, and report each ratio's median over them and its range (ratios move between processes by more than within one)"),
			&cli.StringFlag{Name: ratiosFlag, Hidden: true, Usage: "write the measured ratios and peaks as JSON to this file (what --processes reads from each process)"},
			cpuProfileFlag(),
		},
		Action:      withCPUProfile(runBench),
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
		if m, err := export.ReadManifest(dir); err != nil || m.GraphsVersion < gpt2.GraphsVersion {
			fmt.Fprintf(c.App.ErrWriter, "exporting a random GPT-2-small-shaped model to %s (once)...\n", dir)
			o := export.WriteOptions{Name: "random-gpt2-small", Whole: true, Overwrite: export.IsExported(dir)}
			if _, err := export.Write(c.Context, gpt2.Random{Config: gpt2.Small, Seed: 1}, dir, o); err != nil {
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
func peakRSS() int64 { return procStatus("VmHWM:") }

// rss reads the process's resident set size now (VmRSS) in bytes.
func rss() int64 { return procStatus("VmRSS:") }

// procStatus reads one size field of /proc/self/status in bytes (0 where
// there is none).
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
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
	seen := map[hooks.Point]bool{}
	for _, s := range m.Sites() { // every point the model has
		if !seen[s.Point] {
			seen[s.Point] = true
			allRead.Observe(s.Point, func(*hooks.Context, *hooks.Tensor) error { return nil })
		}
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
		"views":      nil, // benchViews
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
	if c.Bool("serve") {
		return runBenchServe(c)
	}
	if c.Bool(patchSweepFlag) {
		return runPatchBench(c)
	}
	if n := c.Int(processesFlag); n > 1 {
		return runBenchProcesses(c, n)
	}
	var result benchResult
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
		m.Engine().Options().Provider, threadsOf(m), spin, goruntime.NumCPU())
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
			g.runs[p] = func(model *modelctx.Transformer) error {
				out, err := model.Forward(ctx, rows, fo...)
				out.Release() // a capture's memory serves the next run
				return err
			}
			if p == "views" {
				g.runs[p] = benchViews(ctx, rows)
			}
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
	memOnly := c.Bool("memory-only")
	for _, g := range groups {
		start := time.Now()
		for _, p := range g.paths[1:] {
			if err := g.runs[p](m); err != nil {
				return fmt.Errorf("%s %s: %w", p, g.name, err)
			}
			if memOnly {
				var ms goruntime.MemStats
				goruntime.ReadMemStats(&ms)
				ch, cu, cm := runtime.MallocStats()
				fmt.Fprintf(w, "    %-12s %-10s peak %.2f x, resident %.2f x (Go heap in use %.2f x, idle %.2f x; C heap %.2f x, in use %.2f x, mapped blocks %.2f x)\n", g.name, p,
					float64(peakRSS())/float64(weights), float64(rss())/float64(weights),
					float64(ms.HeapInuse)/float64(weights), float64(ms.HeapIdle-ms.HeapReleased)/float64(weights),
					float64(ch)/float64(weights), float64(cu)/float64(weights), float64(cm)/float64(weights))
			}
		}
		took := time.Since(start)
		peak, now := peakRSS(), rss()
		fmt.Fprintf(w, "  up to %-12s %8.0f MB = %.2f x the weights (resident after the runs: %.0f MB = %.2f x; first runs, plans built, %.1f s)\n",
			g.name, float64(peak)/1e6, float64(peak)/float64(weights), float64(now)/1e6, float64(now)/float64(weights), took.Seconds())
		result.Peaks = append(result.Peaks, benchPeak{Group: g.name, Peak: float64(peak) / float64(weights)})
	}

	if memOnly {
		return nil
	}

	// Throughput against the baseline.
	// Instances: the per-block model of the memory pass and more opened
	// now, and as many of the whole graph.
	n := c.Int("instances")
	blocks, wholes := []*modelctx.Transformer{m}, []*modelctx.Transformer{}
	defer func() {
		for _, x := range append(blocks[1:], wholes...) {
			x.Close()
		}
	}()
	for i := 0; i < n; i++ {
		whole, err := openWhole(c, dir)
		if err != nil {
			return err
		}
		wholes = append(wholes, whole)
		if i == 0 {
			continue // the memory pass's model is the first per-block instance
		}
		b, err := openModel(c)
		if err != nil {
			return err
		}
		blocks = append(blocks, b)
	}
	stop := benchStopOf(c)
	fmt.Fprintf(w, "\nrounds cycle through %d instance(s) of each model\n", n)
	roundsHeader(w)
	for _, g := range groups {
		var fns []func(int) error
		for _, p := range g.paths {
			models, run := blocks, g.runs[p]
			if p == "whole" {
				models = wholes
			}
			fns = append(fns, func(inst int) error { return run(models[inst]) })
		}
		rounds, err := interleavedOn(stop, n, fns)
		if err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		result.Rows = append(result.Rows, printRounds(w, g.name, g.paths, g.tokens, rounds, stop.target)...)
	}
	if f := c.String(ratiosFlag); f != "" {
		return writeBenchResult(f, result)
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
	rt, err := withRuntime(c)
	if err != nil {
		return nil, err
	}
	return modelctx.OpenWhole(dir, rt)
}

// benchStopOf reads when interleaved rounds may stop from the flags.
func benchStopOf(c *cli.Context) benchStop {
	return benchStop{minTime: c.Duration("min-time"), maxTime: max(c.Duration("max-time"), c.Duration("min-time")),
		minRuns: max(c.Int("min-runs"), 1), target: c.Float64("precision")}
}
