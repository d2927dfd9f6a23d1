package collect

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// With a sketch, the merged state and the boundaries are the same
// whatever the shard sizes, merge order and site reuse, as with exact
// maxima; pass 2 runs on its boundaries.
func TestSketchSplitAndOrderDoNotMatter(t *testing.T) {
	const N, U = 77, 5 // leaves of 8: nine full, one of 5
	p := testParams
	p.SketchLeaf = 8
	acts := data(N, p.Context, U, 9)
	ref1, ref2 := runWith(t, p, acts, N, U, []int{N}, []int{0})
	want := (&Partial{Pass: 1, Count: N, Sites: []*Site{ref1}}).Encode()
	want2 := (&Partial{Pass: 2, Count: N, Sites: []*Site{ref2}}).Encode()
	for _, c := range []struct {
		shards, order []int
		reuse         bool
	}{
		{[]int{3, 74}, []int{1, 0}, false},
		{[]int{10, 10, 10, 10, 10, 10, 10, 7}, []int{7, 2, 5, 0, 3, 6, 1, 4}, false},
		{[]int{5, 11, 13, 40, 8}, []int{4, 3, 2, 1, 0}, true},
		{[]int{1, 1, 1, 1, 1, 1, 1, 1, 69}, []int{8, 0, 7, 1, 6, 2, 5, 3, 4}, true},
	} {
		s1, s2 := runWith(t, p, acts, N, U, c.shards, c.order, c.reuse)
		if got := (&Partial{Pass: 1, Count: N, Sites: []*Site{s1}}).Encode(); !bytes.Equal(got, want) {
			t.Fatalf("shards %v order %v: pass 1 state differs", c.shards, c.order)
		}
		if got := (&Partial{Pass: 2, Count: N, Sites: []*Site{s2}}).Encode(); !bytes.Equal(got, want2) {
			t.Fatalf("shards %v order %v: pass 2 state differs", c.shards, c.order)
		}
	}
	// Units folded in parallel feed the sketch the same values.
	defer func(v int) { parallelMin = v }(parallelMin)
	parallelMin = 1
	s1, _ := runWith(t, p, acts, N, U, []int{40, 37}, []int{1, 0})
	if got := (&Partial{Pass: 1, Count: N, Sites: []*Site{s1}}).Encode(); !bytes.Equal(got, want) {
		t.Fatal("units folded in parallel give another sketch")
	}

	// The sketch compacted: it holds fewer values than the examples.
	held := 0
	for _, b := range ref1.sk.blocks {
		held += b.stored(8)
	}
	if held >= N {
		t.Fatalf("the sketch holds %d values per unit for %d examples", held, N)
	}
}

// Every boundary's rank is within SketchErrorBound of its target, for
// data shaped to make compaction err: random, tied, clustered, sorted
// along the examples.
func TestSketchRankError(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const N, Q = 3000, 10
	shapes := map[string]func(e int) float32{
		"uniform":    func(int) float32 { return rng.Float32() },
		"ties":       func(int) float32 { return float32(rng.IntN(4)) },
		"clustered":  func(int) float32 { return 1 + float32(rng.NormFloat64())*1e-6 },
		"increasing": func(e int) float32 { return float32(e) },
		"decreasing": func(e int) float32 { return float32(N - e) },
		"zigzag":     func(e int) float32 { return float32((e * 7919) % 1024) },
	}
	for _, leaf := range []int{16, 64} {
		bound := SketchErrorBound(N, leaf)
		for name, f := range shapes {
			vals := make([]float32, N)
			k := newSketch(1, leaf)
			for e := range vals {
				vals[e] = f(e)
				k.add(int64(e), vals[e:e+1])
			}
			got, err := k.boundaries(Q, N)
			if err != nil {
				t.Fatal(err)
			}
			sorted := slices.Clone(vals)
			slices.Sort(sorted)
			worst := 0.0
			for i := 1; i < Q; i++ {
				target := (i*N + Q - 1) / Q // 1-based rank
				v := got[i-1]
				below, upTo := 0, 0 // values < v and <= v
				for _, x := range sorted {
					if x < v {
						below++
					}
					if x <= v {
						upTo++
					}
				}
				// v stands at ranks below+1 .. upTo.
				d := 0
				if target < below+1 {
					d = below + 1 - target
				} else if target > upTo {
					d = target - upTo
				}
				worst = math.Max(worst, float64(d)/N)
			}
			if worst > bound {
				t.Errorf("leaf %d, %s: rank error %.4f over the bound %.4f", leaf, name, worst, bound)
			}
		}
	}
	if l := SketchLeafFor(1_000_000); SketchErrorBound(1_000_000, l) > SketchRankError {
		t.Fatalf("leaf %d for a million examples: bound %.4f", l, SketchErrorBound(1_000_000, l))
	}
}
