package collect

import (
	"math"
	"math/big"
)

// The fixed-point grid of Exact: multiples of 2^-exactFrac, in exactLimbs
// limbs of 32 bits (magnitudes up to about 2^133).
const (
	exactLimbs = 8
	exactFrac  = 112
)

// Exact is an order-free sum of float64 values: each value is truncated
// toward zero to a multiple of 2^-112 (a change far below any activation's
// float32 resolution that matters here) and the multiples are summed
// exactly, as a fixed-point integer in 32-bit limbs held in int64s so that
// carries can wait (a limb takes at most 2^32 per add; Normalize runs before
// 2^30 adds pile up). Sums of the same values are therefore equal whatever
// the order they were added or merged in. One state is 64 bytes of limbs,
// a cache line. Infinities, NaN and magnitudes of 2^133 or more make the
// sum NaN.
type Exact struct {
	limbs   [exactLimbs]int64
	pending int32
	nan     bool
}

// Add adds v, truncated to the grid.
func (e *Exact) Add(v float64) {
	if v == 0 {
		return
	}
	bits := math.Float64bits(v)
	exp := int(bits>>52) & 0x7ff
	mant := bits & (1<<52 - 1)
	if exp == 0x7ff {
		e.nan = true
		return
	}
	if exp == 0 {
		exp = 1 // subnormal: no implicit bit
	} else {
		mant |= 1 << 52
	}
	pos := exp - 1075 + exactFrac // grid position of the mantissa's lowest bit
	if pos < 0 {
		if pos <= -53 {
			return // below the grid
		}
		mant >>= uint(-pos)
		pos = 0
	}
	i, sh := pos>>5, uint(pos&31)
	if i+2 >= exactLimbs {
		e.nan = true
		return
	}
	lo := (mant & 0xffffffff) << sh // < 2^63
	hi := (mant >> 32) << sh        // < 2^52
	a0 := int64(lo & 0xffffffff)
	a1 := int64(lo>>32) + int64(hi&0xffffffff)
	a2 := int64(hi >> 32)
	if bits>>63 != 0 {
		a0, a1, a2 = -a0, -a1, -a2
	}
	e.limbs[i] += a0
	e.limbs[i+1] += a1
	e.limbs[i+2] += a2
	if e.pending++; e.pending >= 1<<30 {
		e.Normalize()
	}
}

// Normalize propagates carries: every limb but the last ends in [0, 2^32).
func (e *Exact) Normalize() {
	var carry int64
	for i := 0; i < exactLimbs-1; i++ {
		v := e.limbs[i] + carry
		carry = v >> 32 // arithmetic shift: floor division
		e.limbs[i] = v - carry<<32
	}
	e.limbs[exactLimbs-1] += carry
	e.pending = 0
}

// Merge adds the sum held by o.
func (e *Exact) Merge(o *Exact) {
	e.Normalize()
	oc := *o
	oc.Normalize()
	for i := range e.limbs {
		e.limbs[i] += oc.limbs[i]
	}
	e.nan = e.nan || o.nan
	e.Normalize()
}

// Float64 is the sum rounded to the nearest float64 (NaN if a non-finite
// or too large value was added).
func (e *Exact) Float64() float64 {
	if e.nan {
		return math.NaN()
	}
	var acc, limb big.Int
	for i := exactLimbs - 1; i >= 0; i-- {
		acc.Lsh(&acc, 32)
		acc.Add(&acc, limb.SetInt64(e.limbs[i]))
	}
	f := new(big.Float).SetInt(&acc)
	f.SetMantExp(f, -exactFrac)
	v, _ := f.Float64()
	return v
}
