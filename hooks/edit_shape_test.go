package hooks

import (
	"errors"
	"testing"
)

// TestAddEditChecksVectorShape: a vector with as many values as the point's
// trailing axes but another shape ([64] at [4,16]) is refused.
func TestAddEditChecksVectorShape(t *testing.T) {
	for _, tc := range []struct {
		shape []int
		ok    bool
	}{{[]int{4, 16}, true}, {[]int{64}, false}, {[]int{16, 4}, false}, {[]int{1, 4, 16}, false}} {
		h := New()
		Edit{Site: Site{Point: AttnVOut, Layer: 0}, Kind: Add, Vec: make([]float32, 64), VecShape: tc.shape}.Register(h)
		_, err := Snapshot(h).Call(Site{Point: AttnVOut, Layer: 0}, Zeros(2, 3, 4, 16), false)
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrEditShape)) {
			t.Errorf("vector %v: err = %v", tc.shape, err)
		}
	}
}
