package modelctx

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// chooser picks the next token from one row's logits with the original's
// rules (docs/behaviour.md §1.6): the logits are multiplied by beta = 1/max(temperature,
// 1e-10) in float32; temperature 0 takes the argmax (first index on ties)
// and ignores top-p; with top-p set it samples the nucleus; otherwise it
// samples the whole softmax. Each non-greedy choice draws exactly one number
// from rng, so the draws do not depend on which rows have stopped.
//
// Its buffers are reused from row to row and step to step.
type chooser struct {
	greedy  bool
	nucleus bool
	beta    float32
	topP    float64
	rng     *rand.Rand

	scaled []float32
	w      []float64 // categorical: unnormalised probabilities
	nuc    nucleusScratch
}

func newChooser(temperature, topP float64, useTopP bool, rng *rand.Rand) *chooser {
	return &chooser{
		greedy:  temperature == 0,
		nucleus: useTopP,
		beta:    float32(1 / math.Max(temperature, 1e-10)),
		topP:    topP,
		rng:     rng,
	}
}

// choose returns the token for one row of logits.
func (c *chooser) choose(logits []float32) (int, error) {
	if cap(c.scaled) < len(logits) {
		c.scaled = make([]float32, len(logits))
	}
	s := c.scaled[:len(logits)]
	for i, v := range logits {
		if v != v {
			return 0, fmt.Errorf("%w: NaN at token %d", ErrBadLogits, i)
		}
		s[i] = v * c.beta
	}
	switch {
	case c.greedy:
		return argmax(s), nil
	case c.nucleus:
		if m := s[argmax(s)]; math.IsInf(float64(m), 0) {
			return 0, fmt.Errorf("%w: largest logit is %v", ErrBadLogits, m)
		}
		ids, w := nucleus(s, c.topP, &c.nuc)
		return ids[pick(w, c.rng.Float64())], nil
	}
	if cap(c.w) < len(s) {
		c.w = make([]float64, len(s))
	}
	w, err := softmaxWeights(s, c.w[:len(s)])
	if err != nil {
		return 0, err
	}
	return pick(w, c.rng.Float64()), nil
}

// argmax is torch.argmax on a row without NaNs: the first index of the
// largest value.
func argmax(s []float32) int {
	best := 0
	for i, v := range s {
		if v > s[best] {
			best = i
		}
	}
	return best
}

// softmaxWeights writes exp(s_i - max s) into w (unnormalised softmax).
func softmaxWeights(s []float32, w []float64) ([]float64, error) {
	m := math.Inf(-1)
	for _, v := range s {
		m = math.Max(m, float64(v))
	}
	if math.IsInf(m, 0) {
		return nil, fmt.Errorf("%w: largest logit is %v", ErrBadLogits, m)
	}
	for i, v := range s {
		w[i] = math.Exp(float64(v) - m)
	}
	return w, nil
}

// pick draws index i with probability w[i]/sum(w), given u uniform in [0,1).
func pick(w []float64, u float64) int {
	total := 0.0
	for _, x := range w {
		total += x
	}
	target := u * total
	acc := 0.0
	last := 0
	for i, x := range w {
		if x <= 0 {
			continue
		}
		acc += x
		last = i
		if acc > target {
			return i
		}
	}
	return last // rounding left target at the very top
}

// nucleus applies the original's nucleus_sample filter to already
// temperature-scaled logits: sort descending, take the softmax and its
// cumulative sum, and keep the tokens whose cumulative probability is at
// most max(p0, topP), where p0 is the top token's probability. The token
// whose cumulative probability crosses topP is therefore excluded (Hugging
// Face keeps it), and the top token is always kept. Equal logits are taken
// lowest index first. It returns the kept token ids, most likely first, and
// their probabilities; the returned slices live in sc.
//
// Only the kept tokens (and the one that crosses) are sorted: a heap is
// built in O(V) and popped until the threshold. Probabilities are float64
// here (torch uses float32), which only matters for a token whose
// cumulative probability lies within float32 rounding of the threshold.
func nucleus(s []float32, topP float64, sc *nucleusScratch) ([]int, []float64) {
	n := len(s)
	m := math.Inf(-1)
	for _, v := range s {
		m = math.Max(m, float64(v))
	}
	if cap(sc.keys) < n {
		sc.keys = make([]uint64, n)
		sc.e = make([]float64, n)
	}
	h, e := sc.keys[:n], sc.e[:n]
	z := 0.0
	for i, v := range s {
		e[i] = math.Exp(float64(v) - m)
		z += e[i]
		h[i] = uint64(descending32(v))<<32 | uint64(i)
	}
	heapify(h)
	ids, ps := sc.ids[:0], sc.ps[:0]
	cum, eff := 0.0, 0.0
	for len(h) > 0 {
		var k uint64
		k, h = popMin(h)
		i := int(uint32(k))
		p := e[i] / z
		cum += p
		if len(ids) == 0 {
			eff = math.Max(p, topP)
		}
		if cum > eff {
			break
		}
		ids = append(ids, i)
		ps = append(ps, p)
	}
	sc.ids, sc.ps = ids, ps
	return ids, ps
}

// nucleusScratch holds nucleus's buffers between calls.
type nucleusScratch struct {
	keys []uint64  // heap of (descending logit, index) keys
	e    []float64 // exp(s - max s)
	ids  []int
	ps   []float64
}

// descending32 maps a float32 (not NaN) to a uint32 that sorts in the
// opposite order: the largest float gets the smallest key.
func descending32(f float32) uint32 {
	b := math.Float32bits(f)
	if b>>31 == 1 {
		b = ^b
	} else {
		b |= 1 << 31
	}
	return ^b
}

// heapify makes h a binary min-heap.
func heapify(h []uint64) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
}

func siftDown(h []uint64, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r] < h[l] {
			m = r
		}
		if h[i] <= h[m] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// popMin removes the smallest key and returns it with the shrunk heap.
func popMin(h []uint64) (uint64, []uint64) {
	k := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	siftDown(h, 0)
	return k, h
}

// nucleusKeep is nucleus with fresh scratch (for tests and callers that
// want the kept set): the ids top-p sampling may choose, most likely first.
func nucleusKeep(logits []float32, topP float64) []int {
	ids, _ := nucleus(logits, topP, &nucleusScratch{})
	return ids
}
