package collect

import (
	"fmt"
	"math"
	"slices"
)

// Example is one kept example window of a unit: its index and the unit's
// value at each of its tokens.
type Example struct {
	Index int64
	Acts  []float32
}

// Moments are population moments over every token of every example.
// Skewness and Kurtosis (not excess) are NaN when the variance is 0.
type Moments struct {
	Mean, Variance, Skewness, Kurtosis float64
}

func examples(s *set) []Example {
	cs := s.sorted()
	out := make([]Example, len(cs))
	for i, c := range cs {
		out[i] = Example{Index: c.ex, Acts: append([]float32(nil), s.actsOf(c)...)}
	}
	return out
}

// Top is unit u's most positive examples, by max-over-tokens descending,
// ties to the smaller example index (pass 1).
func (s *Site) Top(u int) []Example { return examples(&s.top[u]) }

// Random is unit u's random sample: the examples with the smallest keys,
// in ascending key order (pass 1).
func (s *Site) Random(u int) []Example { return examples(&s.random[u]) }

// Buckets is unit u's sample of each quantile bucket, in ascending key
// order (pass 2).
func (s *Site) Buckets(u int) [][]Example {
	Q := s.P.Quantiles
	out := make([][]Example, Q)
	for j := range out {
		out[j] = examples(&s.buckets[u*Q+j])
	}
	return out
}

// Moments of unit u (pass 1).
func (s *Site) Moments(u int) Moments {
	if s.n == 0 {
		return Moments{math.NaN(), math.NaN(), math.NaN(), math.NaN()}
	}
	n := float64(s.n)
	mean := s.sums[0][u].Float64() / n
	if s.lo[u] == s.hi[u] && !math.IsNaN(mean) {
		return Moments{Mean: float64(s.lo[u]), Variance: 0, Skewness: math.NaN(), Kurtosis: math.NaN()}
	}
	r2 := s.sums[1][u].Float64() / n
	r3 := s.sums[2][u].Float64() / n
	r4 := s.sums[3][u].Float64() / n
	m2 := r2 - mean*mean
	m3 := r3 - 3*mean*r2 + 2*mean*mean*mean
	m4 := r4 - 4*mean*r3 + 6*mean*mean*r2 - 3*mean*mean*mean*mean
	if !(m2 > 0) {
		return Moments{Mean: mean, Variance: 0, Skewness: math.NaN(), Kurtosis: math.NaN()}
	}
	return Moments{Mean: mean, Variance: m2, Skewness: m3 / (m2 * math.Sqrt(m2)), Kurtosis: m4 / (m2 * m2)}
}

// Boundaries are the Q-1 quantile boundaries of every unit's per-example
// maxima, [unit*(Q-1) + i]: the value at index ceil(i·N/Q)-1 of the sorted
// maxima (nearest rank); with a sketch (Params.SketchLeaf), a value whose
// rank is within SketchErrorBound of it. The site must cover every example
// (pass 1, merged).
func (s *Site) Boundaries() ([]float32, error) {
	Q, N := s.P.Quantiles, s.Count
	if s.Pass == 1 && Q > 0 && s.sk != nil {
		b, err := s.sk.boundaries(Q, N)
		if err != nil {
			return nil, fmt.Errorf("site %s: %w", s.ID, err)
		}
		return b, nil
	}
	if s.Pass != 1 || Q <= 0 || s.maxima == nil {
		return nil, fmt.Errorf("site %s: no per-example maxima to take quantiles of", s.ID)
	}
	if N == 0 {
		return nil, fmt.Errorf("site %s: no examples", s.ID)
	}
	out := make([]float32, 0, s.Units*(Q-1))
	sorted := make([]float32, N)
	for u := 0; u < s.Units; u++ {
		copy(sorted, s.maxima[u*N:(u+1)*N])
		slices.Sort(sorted)
		for i := 1; i < Q; i++ {
			out = append(out, sorted[(i*N+Q-1)/Q-1])
		}
	}
	return out, nil
}

// UnitBoundaries returns unit u's boundaries out of Boundaries' result.
func UnitBoundaries(all []float32, q, u int) []float64 {
	out := make([]float64, q-1)
	for i := range out {
		out[i] = float64(all[u*(q-1)+i])
	}
	return out
}
