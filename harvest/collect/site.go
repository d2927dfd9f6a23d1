package collect

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
)

// Errors callers branch on.
var (
	// ErrMismatch: two states that cannot merge (other site, units, pass or parameters).
	ErrMismatch = errors.New("harvest states do not match")
	// ErrBadPartial: bytes that are not an encoded partial state.
	ErrBadPartial = errors.New("bad partial state")
)

// Params are the per-unit rules of a job.
type Params struct {
	Context     int    // tokens per example
	Top         int    // most positive records per unit
	Random      int    // random sample size per unit
	Quantiles   int    // quantile buckets (0: none)
	PerQuantile int    // sample size per bucket
	Seed        uint64 // sampling seed
	// SketchLeaf, when > 0, takes the quantile boundaries from a sketch
	// with leaves of this many examples instead of every example's maximum
	// (sketch.go): for jobs whose maxima would not fit in memory.
	SketchLeaf int `json:",omitempty"`
}

// SiteID names where a site's records go: the point's dot path and the
// layer directory (0 for once points).
type SiteID struct {
	Point string
	Layer int
}

func (s SiteID) String() string { return fmt.Sprintf("%s@%d", s.Point, s.Layer) }

// Site is the state of one site's units over a range of examples. Pass 1
// collects the top lists, random samples, moments and (with quantiles) each
// example's maximum; pass 2, given the quantile boundaries, collects each
// bucket's sample.
type Site struct {
	ID    SiteID
	Units int
	P     Params
	Pass  int
	First int64 // first example covered by Maxima
	Count int   // examples covered by Maxima

	// Threads is how many goroutines AddBatch folds with (0: GOMAXPROCS,
	// at most 8): a worker given one thread uses one core.
	Threads int

	n      int64      // values summed per unit (examples × context)
	sums   [4][]Exact // Σx, Σx², Σx³, Σx⁴ per unit
	lo, hi []float32  // smallest and largest value per unit
	top    []set
	random []set
	maxima []float32 // pass 1 with exact quantiles: [unit*Count + (example-First)]
	sk     *sketch   // pass 1 with P.SketchLeaf > 0: the maxima's sketch

	bounds  []float32 // pass 2: [unit*(Q-1) + i], ascending per unit
	buckets []set     // pass 2: [unit*Q + j]

	seeds              []uint64    // unitSeed of each unit
	work               []chunkWork // per unit chunk: its scratch space
	exMax, exMin       []float32
	batchMax           []float32 // with a sketch: the batch's maxima [example-batchFirst, unit]
	batchFirst         int64
	ex1, ex2, ex3, ex4 []float64
}

// NewSite makes the empty state of a site's units for pass 1 (bounds nil)
// or pass 2 (bounds: Q-1 ascending values per unit), covering examples
// [first, first+count) for the per-example maxima.
func NewSite(id SiteID, units int, p Params, pass int, first int64, count int, bounds []float32) (*Site, error) {
	return newSite(id, units, p, pass, first, count, bounds, true)
}

// newSite is NewSite; slab allocates every unit's candidate memory at once
// (see newSets).
func newSite(id SiteID, units int, p Params, pass int, first int64, count int, bounds []float32, slab bool) (*Site, error) {
	if units <= 0 || p.Context <= 0 || p.Top < 0 || p.Random < 0 || p.Quantiles < 0 || p.PerQuantile < 0 || count < 0 ||
		p.SketchLeaf < 0 || p.SketchLeaf > maxK {
		return nil, fmt.Errorf("site %s: bad parameters %+v (units %d)", id, p, units)
	}
	s := &Site{ID: id, Units: units, P: p, Pass: pass, First: first, Count: count}
	s.seeds = make([]uint64, units)
	for u := range s.seeds {
		s.seeds[u] = unitSeed(p.Seed, uint64(id.Layer), uint64(u))
	}
	switch pass {
	case 1:
		for i := range s.sums {
			s.sums[i] = make([]Exact, units)
		}
		s.lo, s.hi = make([]float32, units), make([]float32, units)
		for u := range s.lo {
			s.lo[u], s.hi[u] = float32(math.Inf(1)), float32(math.Inf(-1))
		}
		s.top = newSets(units, p.Top, p.Context, false, slab)
		s.random = newSets(units, p.Random, p.Context, true, slab)
		switch {
		case p.Quantiles > 0 && p.SketchLeaf > 0:
			s.sk = newSketch(units, p.SketchLeaf)
		case p.Quantiles > 0:
			s.maxima = make([]float32, units*count)
		}
	case 2:
		if p.Quantiles <= 0 || len(bounds) != units*(p.Quantiles-1) {
			return nil, fmt.Errorf("site %s: pass 2 needs %d quantile boundaries, got %d", id, units*(p.Quantiles-1), len(bounds))
		}
		s.bounds = bounds
		s.buckets = newSets(units*p.Quantiles, p.PerQuantile, p.Context, true, slab)
	default:
		return nil, fmt.Errorf("site %s: pass %d: want 1 or 2", id, pass)
	}
	return s, nil
}

// Reset empties s for examples [first, first+count) of the same pass,
// parameters and (pass 2) boundaries, keeping its memory: a worker reuses
// its sites from shard to shard instead of allocating (and the system
// zeroing) the candidates' activations again.
func (s *Site) Reset(first int64, count int) error {
	if count < 0 {
		return fmt.Errorf("site %s: reset to %d examples", s.ID, count)
	}
	s.First, s.Count, s.n = first, count, 0
	for k := range s.sums {
		clear(s.sums[k])
	}
	for u := range s.lo {
		s.lo[u], s.hi[u] = float32(math.Inf(1)), float32(math.Inf(-1))
	}
	for _, ss := range [][]set{s.top, s.random, s.buckets} {
		for i := range ss {
			ss[i].reset()
		}
	}
	if s.sk != nil {
		s.sk.reset()
	}
	if s.maxima != nil {
		if len(s.maxima) == s.Units*count {
			clear(s.maxima)
		} else {
			s.maxima = make([]float32, s.Units*count)
		}
	}
	return nil
}

// parallelMin is the least units × tokens of an example for which
// AddBatch splits the units over goroutines (ONNX Runtime's threads wait
// while an observer runs, so the cores are free).
var parallelMin = 1 << 15

// AddBatch adds b consecutive examples starting at example first; acts is
// their activations [b, Context, Units] in C order.
func (s *Site) AddBatch(first int64, acts []float32, b int) error {
	T, U := s.P.Context, s.Units
	if len(acts) != b*T*U {
		return fmt.Errorf("site %s: %d values for %d examples of %d tokens × %d units", s.ID, len(acts), b, T, U)
	}
	if s.Pass == 1 && s.maxima != nil && (first < s.First || first+int64(b) > s.First+int64(s.Count)) {
		return fmt.Errorf("site %s: examples [%d,%d) outside [%d,%d)", s.ID, first, first+int64(b), s.First, s.First+int64(s.Count))
	}
	if s.exMax == nil {
		s.exMax, s.exMin = make([]float32, U), make([]float32, U)
		s.ex1, s.ex2, s.ex3, s.ex4 = make([]float64, U), make([]float64, U), make([]float64, U), make([]float64, U)
	}
	chunks := 1
	if U*T >= parallelMin {
		threads := s.Threads
		if threads <= 0 {
			threads = runtime.GOMAXPROCS(0)
		}
		chunks = min(threads, U, 8)
	}
	if len(s.work) < chunks {
		s.work = make([]chunkWork, chunks)
	}
	if s.sk != nil && s.Pass == 1 {
		if len(s.batchMax) < b*U {
			s.batchMax = make([]float32, b*U)
		}
		s.batchFirst = first
	}
	// Each chunk owns a range of units: every per-unit slot it writes is its own.
	var wg sync.WaitGroup
	for c := 0; c < chunks; c++ {
		lo, hi := c*U/chunks, (c+1)*U/chunks
		run := func() {
			for bi := 0; bi < b; bi++ {
				ex := acts[bi*T*U : (bi+1)*T*U]
				if s.Pass == 1 {
					s.scanMoments(ex, lo, hi)
				} else {
					s.scanMax(ex, lo, hi)
				}
				s.finishUnits(first+int64(bi), ex, lo, hi, &s.work[c])
			}
		}
		if chunks == 1 {
			run()
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	wg.Wait()
	if s.Pass == 1 {
		s.n += int64(b * T)
		if s.sk != nil {
			for bi := 0; bi < b; bi++ {
				s.sk.add(first+int64(bi), s.batchMax[bi*U:(bi+1)*U])
			}
		}
	}
	return nil
}

// momentBlock is how many units scanMoments sums at a time: their
// accumulators stay in the first-level cache while it walks the tokens.
const momentBlock = 256

// scanMoments reads units [lo,hi) of one example [T, U]: per unit its max,
// min and power sums.
func (s *Site) scanMoments(ex []float32, lo, hi int) {
	for b := lo; b < hi; b += momentBlock {
		s.scanMomentsBlock(ex, b, min(b+momentBlock, hi))
	}
}

func (s *Site) scanMomentsBlock(ex []float32, lo, hi int) {
	U, n := s.Units, hi-lo
	mx, mn := s.exMax[lo:hi], s.exMin[lo:hi]
	e1, e2, e3, e4 := s.ex1[lo:hi], s.ex2[lo:hi], s.ex3[lo:hi], s.ex4[lo:hi]
	row := ex[lo:hi]
	for u, x := range row {
		v := float64(x)
		v2 := v * v
		mx[u], mn[u] = x, x
		e1[u], e2[u], e3[u], e4[u] = v, v2, v2*v, v2*v2
	}
	for t := 1; t < s.P.Context; t++ {
		row = ex[t*U+lo : t*U+hi]
		row, mx, mn = row[:n], mx[:n], mn[:n]
		e1, e2, e3, e4 = e1[:n], e2[:n], e3[:n], e4[:n]
		for u, x := range row {
			mx[u] = max(mx[u], x)
			mn[u] = min(mn[u], x)
			v := float64(x)
			v2 := v * v
			e1[u] += v
			e2[u] += v2
			e3[u] += v2 * v
			e4[u] += v2 * v2
		}
	}
}

// scanMax reads units [lo,hi) of one example [T, U]: per unit its max.
func (s *Site) scanMax(ex []float32, lo, hi int) {
	U := s.Units
	mx := s.exMax[lo:hi]
	copy(mx, ex[lo:hi])
	for t := 1; t < s.P.Context; t++ {
		row := ex[t*U+lo : t*U+hi]
		for u, x := range row {
			if x > mx[u] {
				mx[u] = x
			}
		}
	}
}

// finishUnits folds example e into units [lo,hi), after its scan.
func (s *Site) finishUnits(e int64, ex []float32, lo, hi int, w *chunkWork) {
	pending := &w.pending
	if s.Pass == 2 {
		Q := s.P.Quantiles
		for u := lo; u < hi; u++ {
			j := sort.Search(Q-1, func(i int) bool { return s.bounds[u*(Q-1)+i] > s.exMax[u] })
			bs := &s.buckets[u*Q+j]
			if bs.k == 0 {
				continue
			}
			c := cand{ex: e, max: s.exMax[u], key: SplitMix64(s.seeds[u] ^ uint64(e))}
			if !bs.full() || keyBetter(&c, bs.root()) {
				claim(bs, c, u, pending)
			}
		}
		s.fillPending(ex, lo, hi, w)
		return
	}
	if s.maxima != nil {
		i := int(e - s.First)
		for u := lo; u < hi; u++ {
			s.maxima[u*s.Count+i] = s.exMax[u]
		}
	}
	if s.sk != nil {
		copy(s.batchMax[int(e-s.batchFirst)*s.Units+lo:], s.exMax[lo:hi])
	}
	for u := lo; u < hi; u++ {
		s.sums[0][u].Add(s.ex1[u])
		s.sums[1][u].Add(s.ex2[u])
		s.sums[2][u].Add(s.ex3[u])
		s.sums[3][u].Add(s.ex4[u])
		if s.exMin[u] < s.lo[u] {
			s.lo[u] = s.exMin[u]
		}
		if s.exMax[u] > s.hi[u] {
			s.hi[u] = s.exMax[u]
		}
		c := cand{ex: e, max: s.exMax[u]}
		if ts := &s.top[u]; ts.k > 0 && (!ts.full() || topBetter(&c, ts.root())) {
			claim(ts, c, u, pending)
		}
		if rs := &s.random[u]; rs.k > 0 {
			c.key = SplitMix64(s.seeds[u] ^ uint64(e))
			if !rs.full() || keyBetter(&c, rs.root()) {
				claim(rs, c, u, pending)
			}
		}
	}
	s.fillPending(ex, lo, hi, w)
}

// fillJob is a kept candidate whose activations are copied once the
// example's units are all decided: token by token over the pending jobs,
// so the example is read row by row instead of one strided column per
// candidate.
type fillJob struct {
	dst []float32 // the candidate's slot
	u   int
}

func claim(set *set, c cand, u int, pending *[]fillJob) {
	if slot, ok := set.claim(c); ok {
		*pending = append(*pending, fillJob{dst: set.acts[int(slot)*set.t : int(slot+1)*set.t], u: u})
	}
}

// chunkWork is one unit chunk's scratch space: the candidates waiting for
// their activations and a transposed copy of its units.
type chunkWork struct {
	pending []fillJob
	tr      []float32 // [unit-lo, token]
}

// transposeTile is the side of the square tiles fillPending transposes in.
const transposeTile = 32

// fillPending copies the pending candidates' activations (units [lo,hi))
// from ex [T, U]. Many candidates (as while the sets fill up) are copied
// from a tiled transpose of the chunk's units, one contiguous run each;
// few are gathered token row by token row.
func (s *Site) fillPending(ex []float32, lo, hi int, w *chunkWork) {
	U, T := s.Units, s.P.Context
	pending := w.pending
	w.pending = pending[:0]
	if len(pending) == 0 {
		return
	}
	if 4*len(pending) < hi-lo {
		for t := 0; t < T; t++ {
			row := ex[t*U : (t+1)*U]
			for _, j := range pending {
				j.dst[t] = row[j.u]
			}
		}
		return
	}
	n := hi - lo
	if len(w.tr) < n*T {
		w.tr = make([]float32, n*T)
	}
	tr := w.tr[:n*T]
	for t0 := 0; t0 < T; t0 += transposeTile {
		t1 := min(t0+transposeTile, T)
		for u0 := 0; u0 < n; u0 += transposeTile {
			u1 := min(u0+transposeTile, n)
			for t := t0; t < t1; t++ {
				row := ex[t*U+lo+u0 : t*U+lo+u1]
				for i, x := range row {
					tr[(u0+i)*T+t] = x
				}
			}
		}
	}
	for _, j := range pending {
		copy(j.dst, tr[(j.u-lo)*T:(j.u-lo+1)*T])
	}
}

// compatible says whether o can merge into s.
func (s *Site) compatible(o *Site) error {
	if s.ID != o.ID || s.Units != o.Units || s.P != o.P || s.Pass != o.Pass {
		return fmt.Errorf("%w: %s (%d units, pass %d) and %s (%d units, pass %d)", ErrMismatch, s.ID, s.Units, s.Pass, o.ID, o.Units, o.Pass)
	}
	if s.Pass == 1 && s.maxima != nil && (o.First < s.First || o.First+int64(o.Count) > s.First+int64(s.Count)) {
		return fmt.Errorf("%w: %s: examples [%d,%d) outside [%d,%d)", ErrMismatch, s.ID, o.First, o.First+int64(o.Count), s.First, s.First+int64(s.Count))
	}
	return nil
}

// Merge adds o's examples to s. The result does not depend on the order
// states are merged in.
func (s *Site) Merge(o *Site) error {
	if err := s.compatible(o); err != nil {
		return err
	}
	if s.Pass == 2 {
		for i := range s.buckets {
			s.buckets[i].merge(&o.buckets[i])
		}
		return nil
	}
	s.n += o.n
	for u := 0; u < s.Units; u++ {
		for k := range s.sums {
			s.sums[k][u].Merge(&o.sums[k][u])
		}
		s.lo[u] = min(s.lo[u], o.lo[u])
		s.hi[u] = max(s.hi[u], o.hi[u])
		s.top[u].merge(&o.top[u])
		s.random[u].merge(&o.random[u])
		if s.maxima != nil && o.maxima != nil {
			off := int(o.First - s.First)
			copy(s.maxima[u*s.Count+off:u*s.Count+off+o.Count], o.maxima[u*o.Count:(u+1)*o.Count])
		}
	}
	if s.sk != nil && o.sk != nil {
		s.sk.absorb(o.sk)
	}
	return nil
}
