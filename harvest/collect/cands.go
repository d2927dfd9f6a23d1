package collect

import (
	"slices"
	"sort"
)

// cand is one example kept for a unit: by its maximum (top) or its key
// (samples). slot indexes the activations arena of its set.
type cand struct {
	ex   int64
	max  float32
	key  uint64
	slot int32
}

// topBetter orders the top list: larger maximum first, ties to the smaller
// example index.
func topBetter(a, b *cand) bool {
	return a.max > b.max || (a.max == b.max && a.ex < b.ex)
}

// keyBetter orders samples: smaller key first, ties to the smaller example.
func keyBetter(a, b *cand) bool {
	return a.key < b.key || (a.key == b.key && a.ex < b.ex)
}

// set keeps the k best candidates (by top or key order) with their
// activations: a heap whose root is the worst kept candidate.
type set struct {
	k     int
	byKey bool
	items []cand
	acts  []float32 // k slots of T values
	t     int
}

// newSets makes n empty sets of k candidates of t values each. With slab,
// their candidates and activations live in two shared arrays allocated
// here, once (a site that folds examples); without, each set allocates
// its own on first use (a decoded site, which may not allocate more than
// its input justifies).
func newSets(n, k, t int, byKey, slab bool) []set {
	out := make([]set, n)
	var items []cand
	var acts []float32
	if slab && k > 0 {
		items = make([]cand, n*k)
		acts = make([]float32, n*k*t)
	}
	for i := range out {
		out[i] = set{k: k, byKey: byKey, t: t}
		if items != nil {
			out[i].items = items[i*k : i*k : (i+1)*k]
			out[i].acts = acts[i*k*t : (i+1)*k*t : (i+1)*k*t]
		}
	}
	return out
}

// reset empties the set, keeping its memory.
func (s *set) reset() { s.items = s.items[:0] }

func (s *set) better(a, b *cand) bool {
	if s.byKey {
		return keyBetter(a, b)
	}
	return topBetter(a, b)
}

// full reports whether a newcomer must beat the root to enter.
func (s *set) full() bool { return len(s.items) >= s.k }

// root is the worst kept candidate; only valid when the set is not empty.
func (s *set) root() *cand { return &s.items[0] }

// offer adds c if it belongs among the k best, copying its activations
// from src[off], src[off+stride], ... (t values).
func (s *set) offer(c cand, src []float32, off, stride int) {
	if slot, ok := s.claim(c); ok {
		s.fill(slot, src, off, stride)
	}
}

// claim adds c if it belongs among the k best and returns the slot its
// activations must be copied into (the caller fills it).
func (s *set) claim(c cand) (int32, bool) {
	if s.k == 0 {
		return 0, false
	}
	if len(s.items) < s.k {
		c.slot = int32(len(s.items))
		if s.acts == nil {
			s.acts = make([]float32, s.k*s.t)
		}
		s.items = append(s.items, c)
		s.up(len(s.items) - 1)
		return c.slot, true
	}
	if !s.better(&c, &s.items[0]) {
		return 0, false
	}
	c.slot = s.items[0].slot
	s.items[0] = c
	s.down(0)
	return c.slot, true
}

func (s *set) fill(slot int32, src []float32, off, stride int) {
	dst := s.acts[int(slot)*s.t : int(slot+1)*s.t]
	for i := range dst {
		dst[i] = src[off+i*stride]
	}
}

func (s *set) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.better(&s.items[p], &s.items[i]) { // parent is worse or equal: heap holds
			return
		}
		s.items[p], s.items[i] = s.items[i], s.items[p]
		i = p
	}
}

func (s *set) down(i int) {
	n := len(s.items)
	for {
		w := i
		l, r := 2*i+1, 2*i+2
		if l < n && s.better(&s.items[w], &s.items[l]) {
			w = l
		}
		if r < n && s.better(&s.items[w], &s.items[r]) {
			w = r
		}
		if w == i {
			return
		}
		s.items[w], s.items[i] = s.items[i], s.items[w]
		i = w
	}
}

// sorted returns the kept candidates, best first.
func (s *set) sorted() []cand {
	out := append([]cand(nil), s.items...)
	sort.Slice(out, func(i, j int) bool { return s.better(&out[i], &out[j]) })
	return out
}

// worseFirst compares for a worst-first order, given whether a beats b
// and whether b beats a.
func worseFirst(aBetter, bBetter bool) int {
	switch {
	case bBetter:
		return -1
	case aBetter:
		return 1
	}
	return 0
}

// sortWorstFirst orders the kept candidates in place, worst first: still a
// heap (every parent is worse than its children), so the set stays usable;
// read it backwards for best first.
func (s *set) sortWorstFirst() {
	if s.byKey {
		slices.SortFunc(s.items, func(a, b cand) int { return worseFirst(keyBetter(&a, &b), keyBetter(&b, &a)) })
	} else {
		slices.SortFunc(s.items, func(a, b cand) int { return worseFirst(topBetter(&a, &b), topBetter(&b, &a)) })
	}
}

// actsOf returns the activations of a kept candidate.
func (s *set) actsOf(c cand) []float32 {
	return s.acts[int(c.slot)*s.t : int(c.slot+1)*s.t]
}

// merge offers every candidate of o.
func (s *set) merge(o *set) {
	for _, c := range o.items {
		s.offer(c, o.actsOf(c), 0, 1)
	}
}
