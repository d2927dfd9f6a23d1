package collect

import (
	"math"
	"math/big"
)

// exactLimbs covers every float64: bit positions 0 (2^-1074) to 2098.
const exactLimbs = 67

// Exact is the exact sum of float64 values: a fixed-point integer in units
// of 2^-1074, in 32-bit limbs held in int64s so that carries can wait (a
// limb takes at most 2^32 per add; Normalize runs before 2^30 adds pile up).
// Sums of the same values are equal whatever the order they were added or
// merged in. Infinities and NaN make the sum NaN.
type Exact struct {
	limbs   [exactLimbs]int64
	pending int32
	nan     bool
}

// Add adds v exactly.
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
	pos := exp - 1 // bit position of the mantissa's lowest bit, in units of 2^-1074
	i, sh := pos>>5, uint(pos&31)
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
// value was added; ±Inf if it overflows).
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
	f.SetMantExp(f, -1074)
	v, _ := f.Float64()
	return v
}
