package collect

import (
	"bytes"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

func TestSplitMix64Vectors(t *testing.T) {
	if got := SplitMix64(0); got != 0xe220a8397b1dcdaf {
		t.Fatalf("splitmix64(0) = %#x", got)
	}
	for _, c := range []struct{ seed, layer, unit, example, key uint64 }{
		{0, 0, 0, 0, 0x2130748aaac80268},
		{0, 1, 7, 3, 0xdd43145c52066d77},
		{7, 1, 63, 100, 0xae27659bb3c8cc64},
		{11, 2, 239, 150, 0x3b15093af8c2e6f1},
		{math.MaxUint64, 0, 5, 4294967296, 0xd3d3e3b96c4b8e31},
	} {
		if got := Key(c.seed, c.layer, c.unit, c.example); got != c.key {
			t.Errorf("key%v = %#x, want %#x", c, got, c.key)
		}
	}
}

func TestExactSumIsOrderFree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, 2000)
	for i := range vals {
		vals[i] = (rng.Float64() - 0.5) * math.Pow(2, float64(rng.IntN(160)-100))
	}
	vals = append(vals, 1e30, -1e30, 3e-40, -5e-30, 0)
	truth := new(big.Float).SetPrec(4000)
	var a Exact
	for _, v := range vals {
		a.Add(v)
		truth.Add(truth, new(big.Float).SetFloat64(v))
	}
	want := a.Float64()
	exact, _ := truth.Float64()
	// Truncation to the 2^-112 grid moves each value by less than 2^-112.
	if d := math.Abs(want - exact); d > float64(len(vals))*math.Pow(2, -112)+math.Abs(exact)*1e-16 {
		t.Fatalf("sum %v, exact %v", want, exact)
	}
	for trial := 0; trial < 5; trial++ {
		rng.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
		var parts [3]Exact
		for i, v := range vals {
			parts[i%3].Add(v)
		}
		parts[2].Merge(&parts[0])
		parts[2].Merge(&parts[1])
		if got := parts[2].Float64(); got != want {
			t.Fatalf("shuffled and merged: %v, want %v", got, want)
		}
	}
	for _, bad := range []float64{math.Inf(1), math.NaN(), 1e41} {
		var n Exact
		n.Add(bad)
		if !math.IsNaN(n.Float64()) {
			t.Fatalf("adding %v must make the sum NaN", bad)
		}
	}
}

// data makes N examples of T tokens × U units, with ties and a constant unit.
func data(n, T, U int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 9))
	out := make([]float32, n*T*U)
	for i := range out {
		u := i % U
		switch u {
		case 0:
			out[i] = 0 // never fires
		case 1:
			out[i] = float32(rng.IntN(3)) // many ties
		default:
			out[i] = float32(rng.NormFloat64()*float64(u) + 0.3)
		}
	}
	return out
}

var testParams = Params{Context: 5, Top: 4, Random: 3, Quantiles: 4, PerQuantile: 2, Seed: 42}

// run harvests examples [0,N) in shards of the given sizes, merges the
// partials in the given order through Encode/Decode, and returns pass 1
// and pass 2 merged states. With reuse, one site per pass computes every
// shard, Reset in between, as a worker does.
func run(t *testing.T, acts []float32, N, U int, shards []int, order []int, reuse ...bool) (*Site, *Site) {
	t.Helper()
	return runWith(t, testParams, acts, N, U, shards, order, reuse...)
}

// runWith is run with other parameters.
func runWith(t *testing.T, params Params, acts []float32, N, U int, shards []int, order []int, reuse ...bool) (*Site, *Site) {
	t.Helper()
	T := params.Context
	id := SiteID{Point: "mlp.post_act", Layer: 1}
	pass := func(n int, bounds []float32) *Site {
		var parts []*Partial
		var spare *Site
		first := 0
		for _, sz := range shards {
			s, err := spare, error(nil)
			if s != nil {
				err = s.Reset(int64(first), sz)
			} else {
				s, err = NewSite(id, U, params, n, int64(first), sz, bounds)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(reuse) > 0 && reuse[0] {
				spare = s
			}
			if err := s.AddBatch(int64(first), acts[first*T*U:(first+sz)*T*U], sz); err != nil {
				t.Fatal(err)
			}
			p := &Partial{Pass: n, First: int64(first), Count: sz, Sites: []*Site{s}}
			dec, err := Decode(p.Encode())
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, dec)
			first += sz
		}
		all, _ := NewSite(id, U, params, n, 0, N, bounds)
		merged := &Partial{Pass: n, Count: N, Sites: []*Site{all}}
		for _, i := range order {
			if err := merged.Merge(parts[i]); err != nil {
				t.Fatal(err)
			}
		}
		return all
	}
	p1 := pass(1, nil)
	b, err := p1.Boundaries()
	if err != nil {
		t.Fatal(err)
	}
	return p1, pass(2, b)
}

// The merged result is byte-identical whatever the shard sizes and merge
// order, and equals a brute-force reading of the rules.
func TestSplitAndOrderDoNotMatter(t *testing.T) {
	const N, U = 37, 6
	T := testParams.Context
	acts := data(N, T, U, 3)
	ref1, ref2 := run(t, acts, N, U, []int{N}, []int{0})
	want := (&Partial{Pass: 1, Count: N, Sites: []*Site{ref1}}).Encode()
	want2 := (&Partial{Pass: 2, Count: N, Sites: []*Site{ref2}}).Encode()
	for _, c := range []struct{ shards, order []int }{
		{[]int{1, 36}, []int{1, 0}},
		{[]int{10, 10, 10, 7}, []int{3, 1, 0, 2}},
		{[]int{5, 5, 5, 5, 5, 5, 5, 2}, []int{7, 6, 5, 4, 3, 2, 1, 0}},
	} {
		s1, s2 := run(t, acts, N, U, c.shards, c.order)
		if got := (&Partial{Pass: 1, Count: N, Sites: []*Site{s1}}).Encode(); !bytes.Equal(got, want) {
			t.Fatalf("shards %v: pass 1 state differs", c.shards)
		}
		if got := (&Partial{Pass: 2, Count: N, Sites: []*Site{s2}}).Encode(); !bytes.Equal(got, want2) {
			t.Fatalf("shards %v: pass 2 state differs", c.shards)
		}
	}
	checkBruteForce(t, acts, N, U, ref1, ref2)

	// One site per pass reused from shard to shard (Reset) gives the same state.
	for _, shards := range [][]int{{10, 10, 10, 7}, {30, 7}, {7, 30}} {
		order := make([]int, len(shards))
		for i := range order {
			order[i] = i
		}
		s1, s2 := run(t, acts, N, U, shards, order, true)
		if !bytes.Equal((&Partial{Pass: 1, Count: N, Sites: []*Site{s1}}).Encode(), want) ||
			!bytes.Equal((&Partial{Pass: 2, Count: N, Sites: []*Site{s2}}).Encode(), want2) {
			t.Fatalf("shards %v on one reused site: another state", shards)
		}
	}

	// Units split over goroutines give the same state.
	defer func(v int) { parallelMin = v }(parallelMin)
	parallelMin = 1
	s1, s2 := run(t, acts, N, U, []int{10, 27}, []int{1, 0})
	if !bytes.Equal((&Partial{Pass: 1, Count: N, Sites: []*Site{s1}}).Encode(), want) ||
		!bytes.Equal((&Partial{Pass: 2, Count: N, Sites: []*Site{s2}}).Encode(), want2) {
		t.Fatal("units folded in parallel give another state")
	}
}

func checkBruteForce(t *testing.T, acts []float32, N, U int, s1, s2 *Site) {
	T, p := testParams.Context, testParams
	bounds, _ := s1.Boundaries()
	for u := 0; u < U; u++ {
		maxima := make([]float32, N)
		var vals []float64
		for e := 0; e < N; e++ {
			maxima[e] = float32(math.Inf(-1))
			for tk := 0; tk < T; tk++ {
				x := acts[(e*T+tk)*U+u]
				maxima[e] = max(maxima[e], x)
				vals = append(vals, float64(x))
			}
		}
		idx := make([]int, N)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(i, j int) bool { return maxima[idx[i]] > maxima[idx[j]] })
		byKey := slices.Clone(idx)
		sort.Slice(byKey, func(i, j int) bool {
			return Key(p.Seed, 1, uint64(u), uint64(byKey[i])) < Key(p.Seed, 1, uint64(u), uint64(byKey[j]))
		})
		check := func(what string, got []Example, want []int) {
			if len(got) != len(want) {
				t.Fatalf("unit %d %s: %d examples, want %d", u, what, len(got), len(want))
			}
			for i := range want {
				if got[i].Index != int64(want[i]) || got[i].Acts[0] != acts[want[i]*T*U+u] {
					t.Fatalf("unit %d %s: %v, want %v", u, what, got[i].Index, want)
				}
			}
		}
		check("top", s1.Top(u), idx[:p.Top])
		check("random", s1.Random(u), byKey[:p.Random])
		sorted := slices.Clone(maxima)
		slices.Sort(sorted)
		b := UnitBoundaries(bounds, p.Quantiles, u)
		for i := 1; i < p.Quantiles; i++ {
			if want := float64(sorted[int(math.Ceil(float64(i*N)/float64(p.Quantiles)))-1]); b[i-1] != want {
				t.Fatalf("unit %d boundary %d = %v, want %v", u, i, b[i-1], want)
			}
		}
		for j, got := range s2.Buckets(u) {
			var want []int
			for _, e := range byKey {
				lo, hi := math.Inf(-1), math.Inf(1)
				if j > 0 {
					lo = b[j-1]
				}
				if j < p.Quantiles-1 {
					hi = b[j]
				}
				if m := float64(maxima[e]); lo <= m && m < hi && len(want) < p.PerQuantile {
					want = append(want, e)
				}
			}
			check("bucket", got, want)
		}
		m := s1.Moments(u)
		var mean, m2, m3, m4 float64
		for _, v := range vals {
			mean += v
		}
		mean /= float64(len(vals))
		for _, v := range vals {
			d := v - mean
			m2 += d * d
			m3 += d * d * d
			m4 += d * d * d * d
		}
		n := float64(len(vals))
		m2, m3, m4 = m2/n, m3/n, m4/n
		if u == 0 {
			if m.Variance != 0 || !math.IsNaN(m.Skewness) || !math.IsNaN(m.Kurtosis) || m.Mean != 0 {
				t.Fatalf("constant unit: %+v", m)
			}
			continue
		}
		near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*(1+math.Abs(b)) }
		if !near(m.Mean, mean) || !near(m.Variance, m2) || !near(m.Skewness, m3/math.Pow(m2, 1.5)) || !near(m.Kurtosis, m4/(m2*m2)) {
			t.Fatalf("unit %d moments %+v, want %v %v %v %v", u, m, mean, m2, m3/math.Pow(m2, 1.5), m4/(m2*m2))
		}
	}
}

func TestMergeRefusesOtherSites(t *testing.T) {
	a, _ := NewSite(SiteID{"mlp.post_act", 0}, 4, testParams, 1, 0, 4, nil)
	b, _ := NewSite(SiteID{"mlp.post_act", 1}, 4, testParams, 1, 0, 4, nil)
	if err := a.Merge(b); !errors.Is(err, ErrMismatch) {
		t.Fatalf("got %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	acts := data(6, testParams.Context, 3, 1)
	s, _ := NewSite(SiteID{"mlp.post_act", 0}, 3, testParams, 1, 0, 6, nil)
	s.AddBatch(0, acts, 6)
	f.Add((&Partial{Pass: 1, Count: 6, Sites: []*Site{s}}).Encode())
	b, _ := s.Boundaries()
	s2, _ := NewSite(SiteID{"resid.post_emb", 0}, 3, testParams, 2, 0, 6, b)
	s2.AddBatch(0, acts, 6)
	f.Add((&Partial{Pass: 2, Count: 6, Sites: []*Site{s2}}).Encode())
	sp := testParams
	sp.SketchLeaf = 2
	s3, _ := NewSite(SiteID{"mlp.post_act", 1}, 3, sp, 1, 0, 5, nil)
	s3.AddBatch(0, acts[:5*sp.Context*3], 5) // two full leaves compacted, one partial leaf
	if len(s3.sk.blocks) != 2 {
		f.Fatalf("sketch seed: %d blocks, want a compacted block and a partial leaf", len(s3.sk.blocks))
	}
	f.Add((&Partial{Pass: 1, Count: 5, Sites: []*Site{s3}}).Encode())
	f.Add([]byte(partialMagic))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Decode(in)
		if err != nil {
			if !errors.Is(err, ErrBadPartial) {
				t.Fatalf("error %v does not wrap ErrBadPartial", err)
			}
			return
		}
		if _, err := Decode(p.Encode()); err != nil {
			t.Fatalf("re-encoded partial does not decode: %v", err)
		}
	})
}
