package modelctx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Errors of Weight.
var (
	ErrNoWeight    = errors.New("model has no such weight")
	ErrLayer       = errors.New("bad layer for this location")
	ErrWeightShape = errors.New("weight does not have its standard shape")
)

// NoLayer is the layer argument for locations that exist once per model
// (the original's layer=None).
const NoLayer = -1

// findWeightLocation returns the manifest's entry for a weight location.
func findWeightLocation(m *export.Manifest, loc WeightLocationType, layer int) (export.WeightLocation, bool) {
	for _, w := range m.WeightLocations {
		if w.Location == string(loc) && w.Layer == layer {
			return w, true
		}
	}
	return export.WeightLocation{}, false
}

// isPerm reports whether p is a permutation of 0..n-1.
func isPerm(p []int, n int) bool {
	if len(p) != n {
		return false
	}
	seen := make([]bool, n)
	for _, a := range p {
		if a < 0 || a >= n || seen[a] {
			return false
		}
		seen[a] = true
	}
	return true
}

// weightFile reads tensors of an exported model's weights file.
type weightFile struct {
	f     *os.File
	bySrc map[string]export.Weight
}

func openWeights(dir string, m *export.Manifest) (*weightFile, error) {
	wf := &weightFile{bySrc: map[string]export.Weight{}}
	for _, w := range m.Weights.Tensors {
		if w.Source != "" {
			wf.bySrc[w.Source] = w
		}
	}
	if m.Weights.File == "" {
		return wf, nil
	}
	f, err := os.Open(filepath.Join(dir, m.Weights.File))
	if err != nil {
		return nil, fmt.Errorf("open weights: %w", err)
	}
	wf.f = f
	return wf, nil
}

// close closes the file; reads after it fail with os.ErrClosed. Callers
// close once.
func (wf *weightFile) close() error {
	if wf == nil || wf.f == nil {
		return nil
	}
	return wf.f.Close()
}

// piece reads the checkpoint tensor stored under key, as a view in the
// checkpoint's own layout (a stored transpose undone by the view, not by
// a copy).
func (wf *weightFile) piece(key string) (*view, error) {
	w, ok := wf.bySrc[key]
	if !ok || wf.f == nil {
		return nil, fmt.Errorf("%w: the weights file holds no %s", ErrNoWeight, key)
	}
	n := int64(1)
	for _, d := range w.Dims {
		n *= d
	}
	if w.Length != 4*n {
		return nil, fmt.Errorf("weights: %s is %d bytes, its dims %v need %d", w.Name, w.Length, w.Dims, 4*n)
	}
	raw := make([]byte, w.Length)
	if _, err := wf.f.ReadAt(raw, w.Offset); err != nil {
		return nil, fmt.Errorf("weights: read %s at %d: %w", w.Name, w.Offset, err)
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	shape := make([]int, len(w.Dims))
	for i, d := range w.Dims {
		shape[i] = int(d)
	}
	v := newView(data, shape)
	if w.Transposed {
		if len(shape) != 2 {
			return nil, fmt.Errorf("weights: %s is marked transposed but has dims %v", w.Name, w.Dims)
		}
		v = v.permute([]int{1, 0})
	}
	return v, nil
}

// view is a strided view of float32 data.
type view struct {
	data    []float32
	shape   []int
	strides []int
}

func newView(data []float32, shape []int) *view {
	st := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = s
		s *= shape[i]
	}
	return &view{data: data, shape: shape, strides: st}
}

func (v *view) permute(perm []int) *view {
	out := &view{data: v.data, shape: make([]int, len(perm)), strides: make([]int, len(perm))}
	for i, p := range perm {
		out.shape[i], out.strides[i] = v.shape[p], v.strides[p]
	}
	return out
}

// split turns axis ax of size n*k into axes (n, k).
func (v *view) split(ax, n int) (*view, error) {
	if ax >= len(v.shape) || n <= 0 || v.shape[ax]%n != 0 {
		return nil, fmt.Errorf("cannot split axis %d of %v into %d heads", ax, v.shape, n)
	}
	k := v.shape[ax] / n
	shape := append(append(append([]int{}, v.shape[:ax]...), n, k), v.shape[ax+1:]...)
	st := append(append(append([]int{}, v.strides[:ax]...), v.strides[ax]*k, v.strides[ax]), v.strides[ax+1:]...)
	return &view{data: v.data, shape: shape, strides: st}, nil
}

func (v *view) contiguous() bool {
	s := 1
	for i := len(v.shape) - 1; i >= 0; i-- {
		if v.shape[i] != 1 && v.strides[i] != s {
			return false
		}
		s *= v.shape[i]
	}
	return true
}

// tensor copies the view into a C-order tensor (no copy when it already is one).
func (v *view) tensor() *hooks.Tensor {
	n := 1
	for _, d := range v.shape {
		n *= d
	}
	shape := append([]int{}, v.shape...)
	if v.contiguous() {
		return &hooks.Tensor{Shape: shape, Data: v.data[:n]}
	}
	out := make([]float32, n)
	idx := make([]int, len(v.shape))
	off := 0
	for o := range out {
		out[o] = v.data[off]
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			off += v.strides[i]
			if idx[i] < v.shape[i] {
				break
			}
			off -= idx[i] * v.strides[i]
			idx[i] = 0
		}
	}
	return &hooks.Tensor{Shape: shape, Data: out}
}

// normalizeAxis divides every slice along axis ax by its L2 norm, floored
// at eps (torch.nn.functional.normalize).
func normalizeAxis(t *hooks.Tensor, ax int, eps float64) {
	inner := 1
	for _, d := range t.Shape[ax+1:] {
		inner *= d
	}
	n := t.Shape[ax]
	outer := len(t.Data) / max(1, n*inner)
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			base := o*n*inner + i
			var ss float64
			for k := 0; k < n; k++ {
				x := float64(t.Data[base+k*inner])
				ss += x * x
			}
			norm := math.Max(math.Sqrt(ss), eps)
			for k := 0; k < n; k++ {
				t.Data[base+k*inner] = float32(float64(t.Data[base+k*inner]) / norm)
			}
		}
	}
}
