package collect

import (
	"cmp"
	"fmt"
	"slices"
)

// The quantile sketch. Exact quantile boundaries keep every example's
// maximum for every unit; when that is too much memory the job sets
// Params.SketchLeaf = L and every site keeps a sketch instead, whose
// result depends only on the examples, never on how they were split into
// shards or the order the shards were merged in.
//
// The examples are cut into aligned blocks: a leaf is examples
// [j·L, (j+1)·L), a block of level h is 2^h leaves, aligned the same way.
// A complete leaf keeps its L maxima per unit, sorted (weight 1 each).
// Two complete sibling blocks of level h become their parent: their 2L
// sorted values merged, every other one kept (weight 2^(h+1)), starting at
// position 0 or 1 as a hash of the parent's place says. Because blocks are
// fixed by example index, whichever shard or merge completes a block
// computes the same values. A partial leaf (a shard's edge) keeps its raw
// maxima until the other pieces of that leaf arrive; the last leaf of the
// job, shorter than L, is never compacted, and neither is any block that
// would reach past the last example.
//
// Rank error: merging two blocks whose values weigh w moves any value's
// estimated rank by at most w; over the H levels of a job of N examples
// the compactions move it by at most H·N/(2L), and the returned boundary is
// one stored value, of weight at most N/L. So a boundary's rank is within
// (H/2 + 1)·N/L of its target: SketchLeafFor picks L for ≤ 0.5% of N.

// SketchRankError is the largest rank error, as a fraction of the
// examples, that SketchLeafFor allows.
const SketchRankError = 0.005

// SketchLeafFor returns the smallest power-of-two leaf size (at least 64)
// whose sketch of n examples has a rank error of at most SketchRankError.
func SketchLeafFor(n int) int {
	for l := 64; ; l *= 2 {
		if SketchErrorBound(n, l) <= SketchRankError {
			return l
		}
	}
}

// SketchErrorBound is the sketch's worst-case rank error, as a fraction of
// n, with leaves of l examples.
func SketchErrorBound(n, l int) float64 {
	return (float64(sketchLevels(n, l))/2 + 1) / float64(l)
}

// sketchLevels is how many times values of n examples can be compacted
// with leaves of l.
func sketchLevels(n, l int) int {
	h := 0
	for int64(l)<<h < int64(n) {
		h++
	}
	return h
}

// SketchBytes is the most memory a merged sketch of n examples holds for
// units units: one block per level and one partial leaf.
func SketchBytes(units, n, l int) int64 {
	return int64(units) * int64(l) * int64(sketchLevels(n, l)+2) * 4
}

// block is one aligned block of a sketch: values [unit*stride + k], sorted
// per unit once full (L values); a partial leaf holds count raw values per
// unit.
type block struct {
	level  int
	index  int64
	count  int // examples the block's values stand for
	stride int
	vals   []float32
}

// stored is how many values per unit the block holds.
func (b *block) stored(leaf int) int { return min(b.count, leaf) }

// unit returns unit u's stored values.
func (b *block) unit(u, leaf int) []float32 {
	return b.vals[u*b.stride : u*b.stride+b.stored(leaf)]
}

type blockKey struct {
	level int
	index int64
}

// sketch is a site's quantile sketch over the examples added so far.
type sketch struct {
	units, leaf int
	blocks      map[blockKey]*block
	merge       []float32 // scratch for compactions: 2L values
}

func newSketch(units, leaf int) *sketch {
	return &sketch{units: units, leaf: leaf, blocks: map[blockKey]*block{}}
}

func (k *sketch) reset() { clear(k.blocks) }

// leafPiece returns the partial leaf j, made empty if new.
func (k *sketch) leafPiece(j int64) *block {
	key := blockKey{0, j}
	b := k.blocks[key]
	if b == nil {
		b = &block{index: j, stride: k.leaf, vals: make([]float32, k.units*k.leaf)}
		k.blocks[key] = b
	}
	return b
}

// full reports whether a block holds all the examples of its range.
func (k *sketch) full(b *block) bool { return b.count == k.leaf<<b.level }

// sortUnits sorts each unit's first n values of b.
func (k *sketch) sortUnits(b *block, n int) {
	for u := 0; u < k.units; u++ {
		slices.Sort(b.vals[u*k.leaf : u*k.leaf+n])
	}
}

// settle files a block that just became full: sorted if a leaf, then
// merged with its sibling as long as the sibling is full too.
func (k *sketch) settle(b *block) {
	if b.level == 0 {
		k.sortUnits(b, k.leaf)
	}
	for {
		sib := k.blocks[blockKey{b.level, b.index ^ 1}]
		if sib == nil || !k.full(sib) {
			k.blocks[blockKey{b.level, b.index}] = b
			return
		}
		delete(k.blocks, blockKey{b.level, b.index})
		delete(k.blocks, blockKey{sib.level, sib.index})
		lo, hi := b, sib
		if lo.index > hi.index {
			lo, hi = hi, lo
		}
		b = k.compact(lo, hi)
	}
}

// compact merges two full sibling blocks into their parent, reusing the
// lower one's memory.
func (k *sketch) compact(lo, hi *block) *block {
	L := k.leaf
	if cap(k.merge) < 2*L {
		k.merge = make([]float32, 2*L)
	}
	m := k.merge[:2*L]
	parent := &block{level: lo.level + 1, index: lo.index / 2, count: lo.count + hi.count, stride: L, vals: lo.vals}
	off := int(SplitMix64(uint64(parent.level)<<56^uint64(parent.index)) & 1)
	for u := 0; u < k.units; u++ {
		copy(m, lo.unit(u, L))
		copy(m[L:], hi.unit(u, L))
		slices.Sort(m)
		dst := parent.vals[u*L : (u+1)*L]
		for n := range dst {
			dst[n] = m[2*n+off]
		}
	}
	return parent
}

// add puts example values v [unit] of example e into the sketch (examples
// arrive in increasing order within a shard).
func (k *sketch) add(e int64, v []float32) {
	j := e / int64(k.leaf)
	b := k.leafPiece(j)
	for u, x := range v {
		b.vals[u*k.leaf+b.count] = x
	}
	b.count++
	if b.count == k.leaf {
		k.settle(b)
	}
}

// absorb adds o's blocks (disjoint examples) to k.
func (k *sketch) absorb(o *sketch) {
	for _, key := range o.keys() {
		ob := o.blocks[key]
		if ob.level > 0 || o.full(ob) {
			nb := &block{level: ob.level, index: ob.index, count: ob.count, stride: k.leaf, vals: make([]float32, k.units*k.leaf)}
			for u := 0; u < k.units; u++ {
				copy(nb.vals[u*k.leaf:], ob.unit(u, k.leaf))
			}
			k.settle(nb)
			continue
		}
		b := k.leafPiece(ob.index)
		for u := 0; u < k.units; u++ {
			copy(b.vals[u*k.leaf+b.count:], ob.unit(u, k.leaf))
		}
		b.count += ob.count
		if b.count == k.leaf {
			k.settle(b)
		}
	}
}

// keys lists the blocks in (level, index) order.
func (k *sketch) keys() []blockKey {
	out := make([]blockKey, 0, len(k.blocks))
	for key := range k.blocks {
		out = append(out, key)
	}
	slices.SortFunc(out, func(a, b blockKey) int {
		if a.level != b.level {
			return a.level - b.level
		}
		return int(min(max(a.index-b.index, -1), 1))
	})
	return out
}

// boundaries returns the Q-1 boundaries per unit, [unit*(Q-1) + i], of n
// examples: at each target rank ceil(i·n/Q), the smallest stored value
// whose cumulative weight reaches it.
func (k *sketch) boundaries(q, n int) ([]float32, error) {
	keys := k.keys()
	total := 0
	for _, key := range keys {
		total += k.blocks[key].count
	}
	if total != n {
		return nil, fmt.Errorf("the sketch holds %d examples, want %d", total, n)
	}
	type wv struct {
		v float32
		w int64
	}
	var all []wv
	out := make([]float32, 0, k.units*(q-1))
	for u := 0; u < k.units; u++ {
		all = all[:0]
		for _, key := range keys {
			b := k.blocks[key]
			for _, v := range b.unit(u, k.leaf) {
				all = append(all, wv{v, int64(1) << b.level})
			}
		}
		// Equal values may come in any order: the value picked is the same.
		slices.SortFunc(all, func(a, b wv) int { return cmp.Compare(a.v, b.v) })
		var cum int64
		next := 0
		for i := 1; i < q; i++ {
			target := (int64(i)*int64(n) + int64(q) - 1) / int64(q)
			for next < len(all) && cum+all[next].w < target {
				cum += all[next].w
				next++
			}
			out = append(out, all[min(next, len(all)-1)].v)
		}
	}
	return out, nil
}
