package serve

import (
	"encoding/json"
	"math"
	"math/rand"
	"testing"
)

func TestAppendFloatsRoundTrips(t *testing.T) {
	for _, n := range []int{0, 1, 7, parallelFloats - 1, parallelFloats, 50257} {
		v := make([]float32, n)
		for i := range v {
			v[i] = rand.Float32()*200 - 100
		}
		if n > 3 {
			v[1], v[2], v[3] = float32(math.Inf(-1)), float32(math.NaN()), 1e-38
		}
		var back []*float32
		if err := json.Unmarshal(appendFloats(nil, v), &back); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(back) != n {
			t.Fatalf("n=%d: %d values back", n, len(back))
		}
		for i := range v {
			finite := !math.IsInf(float64(v[i]), 0) && !math.IsNaN(float64(v[i]))
			if finite != (back[i] != nil) || (finite && *back[i] != v[i]) {
				t.Fatalf("n=%d: value %d %v came back as %v", n, i, v[i], back[i])
			}
		}
	}
}

func BenchmarkAppendFloatsLogits(b *testing.B) {
	v := make([]float32, 50257)
	for i := range v {
		v[i] = rand.Float32()*20 - 10
	}
	buf := make([]byte, 0, 1<<20)
	for i := 0; i < b.N; i++ {
		buf = appendFloats(buf[:0], v)
	}
	b.SetBytes(int64(len(buf)))
}
