package hooks

import (
	"fmt"
	"strings"
)

// Tensor is the value at a hook point: a float32 array in C order with its
// shape, batch first. Hooks may edit Data in place or return a new Tensor of
// the same shape. A Tensor handed to a hook is valid for the duration of the
// call; Clone it to keep it.
type Tensor struct {
	Shape []int
	Data  []float32
}

// NewTensor wraps data (not copied) with a shape; it fails when they disagree.
func NewTensor(shape []int, data []float32) (*Tensor, error) {
	n := numel(shape)
	if n < 0 || n != len(data) {
		return nil, fmt.Errorf("tensor shape %v needs %d values, got %d", shape, n, len(data))
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}, nil
}

// Zeros makes a zero tensor of this shape.
func Zeros(shape ...int) *Tensor {
	n := numel(shape)
	if n < 0 {
		n = 0
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}

// Numel is the number of values.
func (t *Tensor) Numel() int { return numel(t.Shape) }

// Clone copies the tensor.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// SameShape reports whether u has t's shape.
func (t *Tensor) SameShape(u *Tensor) bool {
	if u == nil || len(t.Shape) != len(u.Shape) {
		return false
	}
	for i := range t.Shape {
		if t.Shape[i] != u.Shape[i] {
			return false
		}
	}
	return true
}

// Offset is the flat index of a full index tuple.
func (t *Tensor) Offset(idx ...int) int {
	off := 0
	for i, d := range t.Shape {
		off = off*d + idx[i]
	}
	return off
}

// At returns the value at a full index tuple.
func (t *Tensor) At(idx ...int) float32 { return t.Data[t.Offset(idx...)] }

// checkTrailing validates indices that address the axes after batch and token.
func (t *Tensor) checkTrailing(idx []int) error {
	if len(t.Shape) < 2 {
		return fmt.Errorf("tensor of shape %v has no axes after batch and token", t.Shape)
	}
	if len(idx) > len(t.Shape)-2 {
		return fmt.Errorf("%d indices for the %d axes after batch and token of shape %v", len(idx), len(t.Shape)-2, t.Shape)
	}
	for i, v := range idx {
		if v < 0 || v >= t.Shape[2+i] {
			return fmt.Errorf("index %d out of range [0,%d) on axis %d of shape %v", v, t.Shape[2+i], 2+i, t.Shape)
		}
	}
	return nil
}

// FillTrailing sets t[:, :, idx...] = v at every batch row and token: the
// indices address the axes after batch and token, left to right, and missing
// ones mean "all" (FillTrailing(0, 7) on mlp.post_act zeroes neuron 7;
// FillTrailing(0, 2) on attn.v_out zeroes head 2).
func (t *Tensor) FillTrailing(v float32, idx ...int) error {
	if err := t.checkTrailing(idx); err != nil {
		return err
	}
	t.forTrailing(idx, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			t.Data[i] = v
		}
	})
	return nil
}

// forTrailing calls f with each contiguous flat range [lo,hi) selected by a
// prefix of trailing indices, over all batch rows and tokens.
func (t *Tensor) forTrailing(idx []int, f func(lo, hi int)) {
	rows := t.Shape[0] * t.Shape[1]
	inner := 1 // size of the block after the indexed axes
	for _, d := range t.Shape[2+len(idx):] {
		inner *= d
	}
	per := 1 // size of one (batch, token) block
	for _, d := range t.Shape[2:] {
		per *= d
	}
	off := 0
	for i, v := range idx {
		stride := 1
		for _, d := range t.Shape[2+i+1:] {
			stride *= d
		}
		off += v * stride
	}
	for r := 0; r < rows; r++ {
		lo := r*per + off
		f(lo, lo+inner)
	}
}

// AddTrailing adds vec, whose shape is the tensor's trailing axes (everything
// after batch and token), at every batch row and token.
func (t *Tensor) AddTrailing(vec []float32) error {
	if len(t.Shape) < 2 {
		return fmt.Errorf("tensor of shape %v has no axes after batch and token", t.Shape)
	}
	per := 1
	for _, d := range t.Shape[2:] {
		per *= d
	}
	if len(vec) != per {
		return fmt.Errorf("vector of %d values does not match the trailing axes %v (%d values)", len(vec), t.Shape[2:], per)
	}
	for r := 0; r+per <= len(t.Data); r += per {
		row := t.Data[r : r+per]
		for i := range row {
			row[i] += vec[i]
		}
	}
	return nil
}

// String describes the shape.
func (t *Tensor) String() string {
	parts := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		parts[i] = fmt.Sprint(d)
	}
	return "tensor[" + strings.Join(parts, ",") + "]"
}
