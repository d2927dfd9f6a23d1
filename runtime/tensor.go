package runtime

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

func sameBacking(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	return unsafe.SliceData(a) == unsafe.SliceData(b)
}

func toInts(s []int64) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}

func toInt64s(s []int) []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = int64(d)
	}
	return out
}

func isIdentity(perm []int) bool {
	for i, p := range perm {
		if p != i {
			return false
		}
	}
	return true
}

func inversePerm(perm []int) []int {
	inv := make([]int, len(perm))
	for i, p := range perm {
		inv[p] = i
	}
	return inv
}

// transpose returns numpy.transpose(t, perm) as a new tensor.
func transpose(t *hooks.Tensor, perm []int) *hooks.Tensor {
	n := len(t.Shape)
	outShape := make([]int, n)
	for i, p := range perm {
		outShape[i] = t.Shape[p]
	}
	inStrides := make([]int, n)
	st := 1
	for i := n - 1; i >= 0; i-- {
		inStrides[i] = st
		st *= t.Shape[i]
	}
	out := make([]float32, len(t.Data))
	idx := make([]int, n)
	for o := range out {
		off := 0
		for i := 0; i < n; i++ {
			off += idx[i] * inStrides[perm[i]]
		}
		out[o] = t.Data[off]
		for i := n - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < outShape[i] {
				break
			}
			idx[i] = 0
		}
	}
	return &hooks.Tensor{Shape: outShape, Data: out}
}

// toValue wraps a caller's tensor (no copy).
func toValue(t *Tensor) (*value, error) {
	if t == nil {
		return nil, fmt.Errorf("nil tensor")
	}
	switch {
	case t.F32 != nil:
		return newValue(t.Shape, t.F32)
	case t.I64 != nil:
		return newValue(t.Shape, t.I64)
	case t.Bool != nil:
		return newValue(t.Shape, t.Bool)
	}
	if numel(t.Shape) == 0 {
		return newValue(t.Shape, []float32{})
	}
	return nil, fmt.Errorf("tensor of shape %v has no data", t.Shape)
}

// fromValue copies a value into Go memory.
func fromValue(v *value) (*Tensor, error) { return fromValueInto(v, nil) }

// fromValueInto is fromValue that copies a float32 value into buf where
// buf has its size.
func fromValueInto(v *value, buf []float32) (*Tensor, error) {
	if v.dev {
		return nil, errOnDevice
	}
	t := &Tensor{Shape: append([]int64(nil), v.shape...)}
	switch v.elem {
	case elemFloat:
		if len(buf) == v.n && v.n > 0 {
			if !sameBacking(buf, v.f32()) { // not already written there
				copy(buf, v.f32())
			}
			t.F32 = buf
			break
		}
		t.F32 = append(make([]float32, 0, v.n), v.f32()...)
	case elemInt64:
		t.I64 = append(make([]int64, 0, v.n), v.i64()...)
	case elemBool:
		t.Bool = append(make([]bool, 0, v.n), v.bools()...)
	default:
		return nil, fmt.Errorf("unsupported output element type %d", v.elem)
	}
	return t, nil
}

// Value is a tensor kept in ONNX Runtime's memory (GPU memory on CUDA) by
// RunKeep, to be fed to a later run through Request.Values without a copy.
// Close it when done; a closed value cannot be fed again.
type Value struct {
	v *value
}

// Shape is the tensor's shape (nil once closed).
func (v *Value) Shape() []int64 {
	if v == nil || v.v == nil || v.v.v == nil {
		return nil
	}
	return append([]int64(nil), v.v.shape...)
}

// OnDevice reports whether the tensor lives in GPU memory.
func (v *Value) OnDevice() bool { return v != nil && v.v != nil && v.v.dev }

// Tensor copies the value into Go memory (it fails for a tensor on the GPU).
func (v *Value) Tensor() (*Tensor, error) {
	if v == nil || v.v == nil || v.v.v == nil {
		return nil, errors.New("closed value")
	}
	return fromValue(v.v)
}

// Close frees the tensor; closing twice is harmless.
func (v *Value) Close() {
	if v != nil && v.v != nil {
		v.v.release()
		v.v = nil
	}
}
