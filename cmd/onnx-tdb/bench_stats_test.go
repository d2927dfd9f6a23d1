package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		xs           []float64
		med, lo, hi  float64
		relFinite    bool
		relUnderFive bool
	}{
		{[]float64{1}, 1, 1, 1, false, false},
		{[]float64{0.9, 1.1, 1.0}, 1.0, 0.9, 1.1, true, false},
		{[]float64{1, 1, 1, 1, 1, 1, 1}, 1, 1, 1, true, true},
		{[]float64{0.5, 0.6, 0.7, 0.8}, 0.65, 0.5, 0.8, true, false},
	} {
		s := spreadOf(tc.xs)
		if math.Abs(s.med-tc.med) > 1e-9 || s.lo != tc.lo || s.hi != tc.hi {
			t.Errorf("%v: median %v range %v-%v", tc.xs, s.med, s.lo, s.hi)
		}
		if !math.IsInf(s.rel, 1) != tc.relFinite || (s.rel <= 0.05) != tc.relUnderFive {
			t.Errorf("%v: relative precision %v", tc.xs, s.rel)
		}
	}
}

// TestBenchStop: rounds stop once the ratios' medians are precise enough,
// not before the least rounds and time, and at the most time whatever.
func TestBenchStop(t *testing.T) {
	round := func(base, path time.Duration) []time.Duration { return []time.Duration{base, path} }
	var steady, noisy benchRounds
	for i := 0; i < 9; i++ {
		steady.times = append(steady.times, round(100, 125))
		noisy.times = append(noisy.times, round(100, time.Duration(60+40*(i%3))))
	}
	s := benchStop{minTime: time.Second, maxTime: 10 * time.Second, minRuns: 5, target: 0.05}
	for _, tc := range []struct {
		name    string
		b       benchRounds
		elapsed time.Duration
		want    bool
	}{
		{"steady, long enough", steady, 2 * time.Second, true},
		{"steady, too soon", steady, 500 * time.Millisecond, false},
		{"steady, too few rounds", benchRounds{times: steady.times[:3]}, 2 * time.Second, false},
		{"noisy", noisy, 2 * time.Second, false},
		{"noisy at the most time", noisy, 11 * time.Second, true},
	} {
		if got := s.done(tc.b, tc.elapsed); got != tc.want {
			t.Errorf("%s: done %v, want %v", tc.name, got, tc.want)
		}
	}
	if r := steady.ratios(1); math.Abs(r[0]-0.8) > 1e-9 {
		t.Errorf("ratio %v, want 0.8", r[0])
	}
}

func TestPrintRounds(t *testing.T) {
	var b benchRounds
	for _, p := range []time.Duration{125, 100, 200} {
		b.times = append(b.times, []time.Duration{100 * time.Millisecond, p * time.Millisecond})
	}
	var out bytes.Buffer
	printRounds(&out, "1x16", []string{"whole", "all-read"}, 16, b, 0.05)
	got := out.String()
	for _, want := range []string{"whole", "all-read", "0.800", "0.500-1.000", "!"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

// TestInterleavedRotates: each round starts one workload later, so that no
// workload always runs first or after the same one.
func TestInterleavedRotates(t *testing.T) {
	var order []int
	fns := make([]func() error, 3)
	for i := range fns {
		fns[i] = func() error { order = append(order, i); return nil }
	}
	b, err := interleaved(benchStop{minRuns: 3, maxTime: time.Hour, target: 1}, fns)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.times) < 3 || len(order) != 3+3*len(b.times) {
		t.Fatalf("%d rounds, %d calls", len(b.times), len(order))
	}
	for c, got := range order[3:] { // after the warm-up, in order
		if r, k := c/3, c%3; got != (k+r)%3 {
			t.Fatalf("order %v: round %d ran workload %d in place %d", order, r, got, k)
		}
	}
}

// With several instances, every workload is warmed up on each, and each
// round runs all its workloads on one instance, cycling through them.
func TestInterleavedCyclesInstances(t *testing.T) {
	type call struct{ fn, inst int }
	var calls []call
	fns := make([]func(int) error, 3)
	for i := range fns {
		fns[i] = func(inst int) error { calls = append(calls, call{i, inst}); return nil }
	}
	b, err := interleavedOn(benchStop{minRuns: 5, maxTime: time.Hour, target: 1}, 2, fns)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.times) < 5 || len(calls) != 2*3+3*len(b.times) {
		t.Fatalf("%d rounds, %d calls", len(b.times), len(calls))
	}
	warm := map[call]bool{}
	for _, c := range calls[:6] {
		warm[c] = true
	}
	if len(warm) != 6 {
		t.Errorf("warm-up calls %v: want each workload once on each instance", calls[:6])
	}
	for c, got := range calls[6:] {
		r, k := c/3, c%3
		if got.inst != r%2 || got.fn != (k+r)%3 {
			t.Fatalf("round %d, place %d ran workload %d on instance %d; want workload %d on instance %d", r, k, got.fn, got.inst, (k+r)%3, r%2)
		}
	}
}
