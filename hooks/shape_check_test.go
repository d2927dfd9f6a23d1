package hooks

import (
	"errors"
	"strings"
	"testing"
)

// TestHookInPlaceReshapeCaught: a hook that edits its tensor's Shape in place
// and resizes Data to match returns "the same shape as its input" (it is its
// input); the check must compare with the shape the site had on the way in.
func TestHookInPlaceReshapeCaught(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(x *Tensor)
	}{
		{"shrink batch", func(x *Tensor) { x.Shape[0] = 1; x.Data = x.Data[:x.Numel()] }},
		{"grow last", func(x *Tensor) { x.Shape[2] *= 2; x.Data = make([]float32, x.Numel()) }},
		{"drop axis", func(x *Tensor) { x.Shape = x.Shape[:2]; x.Data = x.Data[:x.Numel()] }},
		{"swap axes", func(x *Tensor) { x.Shape[1], x.Shape[2] = x.Shape[2], x.Shape[1] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New()
			h.Add(MLPPostAct, func(_ *Context, x *Tensor) (*Tensor, error) {
				tc.edit(x)
				return x, nil
			})
			x := Zeros(2, 3, 4)
			_, err := Snapshot(h).Call(Site{Point: MLPPostAct, Layer: 5}, x, false)
			if !errors.Is(err, ErrHookShape) {
				t.Fatalf("err = %v, want ErrHookShape", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "mlp.post_act layer 5") || !strings.Contains(msg, "[2 3 4]") {
				t.Errorf("error %q does not name the site and its shape", msg)
			}
		})
	}
}

// TestObserverInPlaceReshapeCaught: a trusted observer sees the tensor itself
// and must not change its shape either.
func TestObserverInPlaceReshapeCaught(t *testing.T) {
	h := New()
	h.Observe(MLPPostAct, func(_ *Context, x *Tensor) error {
		x.Shape[0] = 1
		x.Data = x.Data[:x.Numel()]
		return nil
	}, Trusted())
	_, err := Snapshot(h).Call(Site{Point: MLPPostAct, Layer: 0}, Zeros(2, 3, 4), true)
	if !errors.Is(err, ErrHookShape) {
		t.Fatalf("err = %v, want ErrHookShape", err)
	}
}

// TestHookNewTensorSameShapeAccepted: replacing the tensor by a fresh one of
// the site's shape is fine.
func TestHookNewTensorSameShapeAccepted(t *testing.T) {
	h := New()
	h.Add(MLPPostAct, func(_ *Context, x *Tensor) (*Tensor, error) {
		return Zeros(append([]int(nil), x.Shape...)...), nil
	})
	out, err := Snapshot(h).Call(Site{Point: MLPPostAct, Layer: 0}, Zeros(2, 3, 4), false)
	if err != nil || len(out.Data) != 24 {
		t.Fatalf("out %v, err %v", out, err)
	}
}
