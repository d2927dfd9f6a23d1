package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// benchRounds is what interleaved rounds measured: times[r][i] is path i's
// time in round r (path 0 is the baseline).
type benchRounds struct {
	times [][]time.Duration
}

// ratios are path i's per-round speed ratios to the baseline, each from one
// round, where the machine's drift hit both alike.
func (b benchRounds) ratios(i int) []float64 {
	out := make([]float64, len(b.times))
	for r, ts := range b.times {
		out[r] = ts[0].Seconds() / ts[i].Seconds()
	}
	return out
}

// medianTime is path i's median time per run.
func (b benchRounds) medianTime(i int) time.Duration {
	ts := make([]float64, len(b.times))
	for r := range b.times {
		ts[r] = float64(b.times[r][i])
	}
	return time.Duration(median(ts))
}

// spread summarises a sample: its median, range, and the relative
// half-width of an approximate 95% interval of the median
// (1.96 × 1.2533 σ / √n, σ from the interquartile range), which is what
// the rounds must bring under the target.
type spread struct {
	med, lo, hi float64
	rel         float64
	n           int
}

func spreadOf(xs []float64) spread {
	s := spread{n: len(xs), rel: math.Inf(1)}
	if len(xs) == 0 {
		return s
	}
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	s.med, s.lo, s.hi = quantile(sorted, 0.5), sorted[0], sorted[len(sorted)-1]
	if len(xs) >= 3 && s.med != 0 {
		sigma := (quantile(sorted, 0.75) - quantile(sorted, 0.25)) / 1.349
		s.rel = 1.96 * 1.2533 * sigma / math.Sqrt(float64(len(xs))) / math.Abs(s.med)
	}
	return s
}

func median(xs []float64) float64 {
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	return quantile(sorted, 0.5)
}

// quantile of sorted data, linear between order statistics.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (pos-float64(lo))*(sorted[hi]-sorted[lo])
}

// benchStop says when interleaved rounds may stop: after at least minRuns
// rounds and minTime, once every path's median ratio is known to within
// target (relative), or at maxTime whatever the spread.
type benchStop struct {
	minTime, maxTime time.Duration
	minRuns          int
	target           float64
}

// done reports whether rounds so far, started at start, are enough.
func (s benchStop) done(b benchRounds, elapsed time.Duration) bool {
	if len(b.times) < s.minRuns || elapsed < s.minTime {
		return false
	}
	if elapsed >= s.maxTime {
		return true
	}
	for i := 1; i < len(b.times[0]); i++ {
		if spreadOf(b.ratios(i)).rel > s.target {
			return false
		}
	}
	return true
}

// interleaved times several workloads in rounds, each round running every
// workload once in turn, so that drifts in machine speed hit all of them
// alike; ratios between them, per round, are what the benchmark reports.
// Each round starts one workload later than the one before (round r runs
// workload r mod n first), so that none always runs first or always after
// the same other one: a workload that follows another model's pays for
// its caches and pages being cold. Each workload runs once first as a
// warm-up (which also builds its plan).
func interleaved(stop benchStop, fns []func() error) (benchRounds, error) {
	on := make([]func(int) error, len(fns))
	for i, fn := range fns {
		on[i] = func(int) error { return fn() }
	}
	return interleavedOn(stop, 1, on)
}

// interleavedOn is interleaved over several instances of what the
// workloads run on (models opened more than once): each workload is warmed
// up on every instance, and round r runs every workload on instance
// r mod instances. Two instances of the same model, opened in the same
// process, ran the same path up to ~10% apart in one bench run (where
// their sessions' memory happened to lie); a ratio measured on one pair
// of instances carries that luck, a median over rounds that cycle through
// several pairs much less of it.
func interleavedOn(stop benchStop, instances int, fns []func(instance int) error) (benchRounds, error) {
	instances = max(instances, 1)
	for inst := 0; inst < instances; inst++ {
		for _, fn := range fns {
			if err := fn(inst); err != nil {
				return benchRounds{}, err
			}
		}
	}
	var b benchRounds
	start := time.Now()
	for !stop.done(b, time.Since(start)) {
		inst := len(b.times) % instances
		round := make([]time.Duration, len(fns))
		for k := range fns {
			i := (k + len(b.times)) % len(fns)
			t0 := time.Now()
			if err := fns[i](inst); err != nil {
				return benchRounds{}, err
			}
			round[i] = time.Since(t0)
		}
		b.times = append(b.times, round)
	}
	return b, nil
}

// printRounds writes one group's table rows: tokens/s at the median time,
// and each path's ratio to the baseline as the median over rounds, its
// range, and the median's relative precision. It returns the rows.
func printRounds(w io.Writer, name string, paths []string, tokens int, b benchRounds, target float64) []benchRow {
	var rows []benchRow
	for i, p := range paths {
		tps := float64(tokens) / b.medianTime(i).Seconds()
		if i == 0 {
			fmt.Fprintf(w, "%-12s %-10s %12.1f %10s %17s %8s %6d\n", name, p, tps, "-", "-", "-", len(b.times))
			continue
		}
		s := spreadOf(b.ratios(i))
		prec := fmt.Sprintf("±%.1f%%", 100*s.rel)
		if s.rel > target {
			prec += "!"
		}
		fmt.Fprintf(w, "%-12s %-10s %12.1f %10.3f %17s %8s %6d\n", name, p, tps, s.med,
			fmt.Sprintf("%.3f-%.3f", s.lo, s.hi), prec, len(b.times))
		rows = append(rows, benchRow{Group: name, Path: p, Ratio: s.med})
	}
	return rows
}

// roundsHeader is the table's header line.
func roundsHeader(w io.Writer) {
	fmt.Fprintf(w, "\n%-12s %-10s %12s %10s %17s %8s %6s\n", "shape", "path", "tokens/s", "vs whole", "range", "median", "rounds")
}

// benchViews runs a forward that hands every point out as views
// (ForwardViews) and releases them, as a consumer that writes each point
// somewhere and lets go would.
func benchViews(ctx context.Context, rows [][]int) func(*modelctx.Transformer) error {
	return func(m *modelctx.Transformer) error {
		v, err := m.ForwardViews(ctx, rows, modelctx.AllPoints)
		if err != nil {
			return err
		}
		v.Release()
		return nil
	}
}
