package main

import (
	"fmt"

	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/runtime"
	"github.com/urfave/cli/v2"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure forward throughput: the whole model as one graph vs the hooked paths, with peak memory",
		Flags: []cli.Flag{
			modelFlag(),
			&cli.BoolFlag{Name: "random-gpt2-small", Usage: "benchmark a random GPT-2-small-shaped model (exported once into the cache)"},
			&cli.StringFlag{Name: "shapes", Value: "1x16,1x128,4x128,1x1024", Usage: "batch x tokens, comma-separated"},
			&cli.StringFlag{Name: "paths", Value: "whole,no-hooks,one-write,all-read,per-stage", Usage: "which paths to run"},
			&cli.DurationFlag{Name: "min-time", Value: 3 * time.Second, Usage: "time spent per measurement (after a warm-up run)"},
			&cli.IntFlag{Name: "min-runs", Value: 3},
			&cli.StringFlag{Name: "sample", Value: "1,4", Usage: "batch sizes of the decoding rows (16-token prompt, 32 new tokens, KV cache); empty for none"},
		},
		Action: runBench,
	}
}

// benchModel opens --model, or a random GPT-2-small export in the cache.
func benchModel(c *cli.Context) (*modelctx.Transformer, string, error) {
	if c.Bool("random-gpt2-small") {
		fo := fetchOptions(c)
		cache, err := cacheRoot(fo.Dir)
		if err != nil {
			return nil, "", err
		}
		dir := filepath.Join(cache, "exported", "random", "gpt2-small-seed1")
		if !export.IsExported(dir) {
			fmt.Fprintf(c.App.ErrWriter, "exporting a random GPT-2-small-shaped model to %s (once)...\n", dir)
			if _, err := export.WriteGPT2(export.RandomGPT2{Config: export.GPT2Small, Seed: 1}, dir, export.WriteOptions{Name: "random-gpt2-small", Whole: true}); err != nil {
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

func cacheRoot(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if d := os.Getenv("ONNX_TDB_CACHE"); d != "" {
		return d, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "onnx-tdb"), nil
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

// measure runs fn once to warm up, then repeatedly for at least minTime and
// minRuns, and returns the median duration.
func measure(minTime time.Duration, minRuns int, fn func() error) (time.Duration, error) {
	if err := fn(); err != nil {
		return 0, err
	}
	var ds []time.Duration
	start := time.Now()
	for len(ds) < minRuns || time.Since(start) < minTime {
		t0 := time.Now()
		if err := fn(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t0))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], nil
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
	allRead.Observe(hooks.Attn.QKProbs, func(*hooks.Context, *hooks.Tensor) error { return nil })
	for _, p := range hooks.Points() {
		allRead.Observe(p, func(*hooks.Context, *hooks.Tensor) error { return nil })
	}
	perStage := hooks.New()
	identity := func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) { return x, nil }
	perStage.Add(hooks.Resid.PostEmb, identity)
	perStage.Add(hooks.Resid.Torso.PostMLP, identity)
	return map[string][]modelctx.ForwardOption{
		"no-hooks":  nil,
		"one-write": {modelctx.WithHooks(oneWrite)},
		"all-read":  {modelctx.WithHooks(allRead)},
		"per-stage": {modelctx.WithHooks(perStage)},
	}
}

type benchRow struct {
	shape, path string
	tps         float64
}

// runBench measures the whole-graph baseline first (then closes it), resets
// the peak-RSS counter, and measures the hooked paths of the per-block model,
// so the peak it reports is the per-block model's with all its plans.
func runBench(c *cli.Context) error {
	shapes, err := parseShapes(c.String("shapes"))
	if err != nil {
		return err
	}
	paths := strings.Split(c.String("paths"), ",")
	m, dir, err := benchModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	man := m.Manifest()
	w := c.App.Writer
	ctx := c.Context
	_, libVersion := runtime.Library()
	fmt.Fprintf(w, "model %s: %d layers, d_model %d, weights %.0f MB; onnxruntime %s, %s, %d threads, %d CPUs\n",
		man.Name, man.Config.NLayers, man.Config.DModel, float64(man.Weights.Bytes)/1e6, libVersion,
		m.Engine().Options().Device, threadsOf(m), goruntime.NumCPU())
	minTime, minRuns := c.Duration("min-time"), c.Int("min-runs")
	sampleShapes := []int{}
	for _, b := range strings.Split(c.String("sample"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			n, err := strconv.Atoi(b)
			if err != nil || n <= 0 {
				return fmt.Errorf("--sample: %q is not a batch size", b)
			}
			sampleShapes = append(sampleShapes, n)
		}
	}

	forward := func(model *modelctx.Transformer, s benchShape, fo []modelctx.ForwardOption) (float64, error) {
		rows := benchRows(s, man.Config.NVocab)
		d, err := measure(minTime, minRuns, func() error {
			_, err := model.Forward(ctx, rows, fo...)
			return err
		})
		if err != nil {
			return 0, err
		}
		return float64(s.B*s.T) / d.Seconds(), nil
	}
	sample := func(model *modelctx.Transformer, batch int, so []modelctx.SampleOption) (float64, error) {
		rows := benchRows(benchShape{batch, 16}, man.Config.NVocab)
		so = append(so, modelctx.WithNumTokens(32), modelctx.WithSeed(1))
		d, err := measure(minTime, minRuns, func() error {
			_, err := model.Sample(ctx, modelctx.TokenPrompts(rows...), so...)
			return err
		})
		if err != nil {
			return 0, err
		}
		return float64(batch*32) / d.Seconds(), nil
	}

	// Phase 1: the baseline, the exported model as one plain graph.
	base := map[string]float64{}
	if contains(paths, "whole") {
		whole, err := openWhole(c, dir)
		if err != nil {
			return err
		}
		for _, s := range shapes {
			if s.T > man.Config.NCtx {
				continue
			}
			if base[s.String()], err = forward(whole, s, nil); err != nil {
				whole.Close()
				return fmt.Errorf("whole %s: %w", s, err)
			}
		}
		for _, b := range sampleShapes {
			if base[sampleKey(b)], err = sample(whole, b, nil); err != nil {
				whole.Close()
				return fmt.Errorf("whole sample batch %d: %w", b, err)
			}
		}
		whole.Close()
	}
	resetPeakRSS()

	// Phase 2: the per-block model, every path on the same engine.
	opts := benchPaths(m)
	fmt.Fprintf(w, "\n%-14s %-10s %12s %10s %12s\n", "shape", "path", "tokens/s", "vs whole", "peak RSS")
	row := func(shape, path string, tps float64) {
		ratio := "-"
		if b := base[shape]; b > 0 && path != "whole" {
			ratio = fmt.Sprintf("%.3f", tps/b)
		}
		fmt.Fprintf(w, "%-14s %-10s %12.1f %10s %10.0f MB\n", shape, path, tps, ratio, float64(peakRSS())/1e6)
	}
	for _, s := range shapes {
		if s.T > man.Config.NCtx {
			fmt.Fprintf(w, "%-14s skipped: longer than the context window %d\n", s, man.Config.NCtx)
			continue
		}
		if b, ok := base[s.String()]; ok {
			row(s.String(), "whole", b)
		}
		for _, p := range paths {
			if p == "whole" {
				continue
			}
			fo, ok := opts[p]
			if !ok {
				return fmt.Errorf("--paths: unknown path %q", p)
			}
			tps, err := forward(m, s, fo)
			if err != nil {
				return fmt.Errorf("%s %s: %w", p, s, err)
			}
			row(s.String(), p, tps)
		}
	}
	for _, b := range sampleShapes {
		key := sampleKey(b)
		if v, ok := base[key]; ok {
			row(key, "whole", v)
		}
		for _, p := range []string{"no-hooks", "one-write"} {
			if !contains(paths, p) {
				continue
			}
			var so []modelctx.SampleOption
			for _, o := range opts[p] {
				so = append(so, o)
			}
			tps, err := sample(m, b, so)
			if err != nil {
				return fmt.Errorf("sample %s batch %d: %w", p, b, err)
			}
			row(key, p, tps)
		}
	}
	weights := m.Engine().WeightBytes()
	fmt.Fprintf(w, "\npeak RSS of the per-block model with all its plans: %.0f MB = %.2f x the weights (%.0f MB)\n",
		float64(peakRSS())/1e6, float64(peakRSS())/float64(weights), float64(weights)/1e6)
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
	return goruntime.NumCPU()
}

// openWhole opens the exported model's one-graph copy as its own model: the
// baseline a plain ONNX Runtime session gives.
func openWhole(c *cli.Context, dir string) (*modelctx.Transformer, error) {
	dev, id, err := runtime.ParseDevice(c.String("device"))
	if err != nil {
		return nil, err
	}
	return modelctx.OpenWhole(dir, modelctx.WithDevice(dev, id), modelctx.WithThreads(c.Int("threads")))
}
