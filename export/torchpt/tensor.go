package torchpt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"unsafe"
)

type dtypeKind uint8

const (
	kFloat32 dtypeKind = iota
	kFloat64
	kFloat16
	kBFloat16
	kInt64
	kInt32
	kInt16
	kInt8
	kUint8
	kBool
)

// dtype is one torch storage type.
type dtype struct {
	name    string // torch dtype name, Tensor.DType
	storage string // the torch.<X>Storage class of pickles
	size    int    // bytes per element
	float   bool   // values go to Tensor.F32 (else Tensor.I64)
	kind    dtypeKind
}

var dtypes = []dtype{
	{"float32", "FloatStorage", 4, true, kFloat32},
	{"float64", "DoubleStorage", 8, true, kFloat64},
	{"float16", "HalfStorage", 2, true, kFloat16},
	{"bfloat16", "BFloat16Storage", 2, true, kBFloat16},
	{"int64", "LongStorage", 8, false, kInt64},
	{"int32", "IntStorage", 4, false, kInt32},
	{"int16", "ShortStorage", 2, false, kInt16},
	{"int8", "CharStorage", 1, false, kInt8},
	{"uint8", "ByteStorage", 1, false, kUint8},
	{"bool", "BoolStorage", 1, false, kBool},
}

func dtypeByName(name string) *dtype {
	for i := range dtypes {
		if dtypes[i].name == name {
			return &dtypes[i]
		}
	}
	return nil
}

// storageRef is a storage named by a persistent id, and where its bytes are.
type storageRef struct {
	key   string
	dt    *dtype
	numel int64 // elements, as the persistent id says

	// Set by the format reader once it knows where the bytes are (for the
	// legacy format, after the storage list); numel*dt.size bytes from base
	// are known to be present.
	r    io.ReaderAt
	base int64

	// A storage view of the legacy format: elements [rootOffset,
	// rootOffset+numel) of root.
	root       *storageRef
	rootOffset int64
}

func (s *storageRef) source() (io.ReaderAt, int64, error) {
	if s.root != nil {
		r, base, err := s.root.source()
		return r, base + s.rootOffset*int64(s.dt.size), err
	}
	if s.r == nil {
		return nil, 0, corruptf("storage %q has no data", s.key)
	}
	return s.r, s.base, nil
}

// tensorRef is a tensor as the pickle describes it: a view of a storage.
type tensorRef struct {
	st     *storageRef
	offset int64
	shape  []int64
	stride []int64
}

// maxExpandedBytes bounds the result of a view with more elements than its
// storage (a broadcast view with zero strides, as made by Tensor.expand), the
// only way a small file can ask for a large tensor: one float broadcast to
// 32768×32768 would be 4 GiB. Tests lower it.
var maxExpandedBytes int64 = 64 << 20

// outBytes is the size of a materialised tensor of numel elements of dt.
func outBytes(dt *dtype, numel int64) int64 {
	if dt.float {
		return 4 * numel
	}
	return 8 * numel
}

// loadBudget is what the tensors of one file may still read, in bytes of
// their storages, so that many views of one storage (or zip entries that share
// their data) cannot multiply what the file holds without bound.
type loadBudget struct{ left int64 }

func (b *loadBudget) take(n int64) error {
	if b == nil {
		return nil
	}
	if n > b.left {
		return unsupportedf("tensors read %d bytes more from their storages than the file can account for", n-b.left)
	}
	b.left -= n
	return nil
}

// materialize validates the view against its storage, then reads and
// gathers it into a contiguous Tensor. want, when not nil, is the shape the
// caller needs: another one fails before anything is read or allocated.
func (t *tensorRef) materialize(want []int, budget *loadBudget) (*Tensor, error) {
	st, dt := t.st, t.st.dt
	if len(t.shape) != len(t.stride) {
		return nil, corruptf("tensor has %d sizes but %d strides", len(t.shape), len(t.stride))
	}
	if t.offset < 0 {
		return nil, corruptf("tensor has negative storage offset %d", t.offset)
	}
	if want != nil && !sameShape(t.shape, want) {
		return nil, fmt.Errorf("%w: shape %v, want %v", ErrShape, t.shape, want)
	}
	shape := make([]int, len(t.shape))
	numel := int64(1)
	for i, d := range t.shape {
		if d < 0 {
			return nil, corruptf("tensor has negative size %v", t.shape)
		}
		if t.stride[i] < 0 {
			return nil, corruptf("tensor has negative stride %v", t.stride)
		}
		if d > 0 && numel > math.MaxInt32*int64(math.MaxInt32)/d {
			return nil, corruptf("tensor of shape %v is too large", t.shape)
		}
		numel *= d
		shape[i] = int(d)
	}
	out := &Tensor{DType: dt.name, Shape: shape}
	if numel == 0 {
		out.alloc(dt, 0)
		return out, nil
	}
	// The last element the view touches must lie inside the storage.
	room := st.numel - 1 - t.offset
	for i, d := range t.shape {
		s := t.stride[i]
		if room < 0 || (d > 1 && s > 0 && d-1 > room/s) {
			return nil, corruptf("view (offset %d, size %v, stride %v) reaches past storage %q of %d elements",
				t.offset, t.shape, t.stride, st.key, st.numel)
		}
		room -= (d - 1) * s
	}
	if room < 0 {
		return nil, corruptf("view (offset %d, size %v, stride %v) reaches past storage %q of %d elements",
			t.offset, t.shape, t.stride, st.key, st.numel)
	}
	span := st.numel - t.offset - room // elements from the first to the last touched
	if numel > st.numel && outBytes(dt, numel) > maxExpandedBytes {
		return nil, unsupportedf("broadcast view of shape %v (%d elements) over a storage of %d: more than %d bytes",
			t.shape, numel, st.numel, maxExpandedBytes)
	}
	if err := budget.take(numel * int64(dt.size)); err != nil {
		return nil, err
	}
	out.alloc(dt, int(numel))

	r, base, err := st.source()
	if err != nil {
		return nil, err
	}
	sizes, strides := collapse(t.shape, t.stride)
	byteOff := base + t.offset*int64(dt.size)
	if len(sizes) == 1 && strides[0] == 1 && nativeLittleEndian && (dt.kind == kFloat32 || dt.kind == kInt64) {
		// Contiguous, and the file's bytes are the result's bytes.
		if err := readFull(r, out.rawBytes(), byteOff, st.key); err != nil {
			return nil, err
		}
		return out, nil
	}
	raw := make([]byte, span*int64(dt.size))
	if err := readFull(r, raw, byteOff, st.key); err != nil {
		return nil, err
	}
	gather(out, raw, dt, sizes, strides)
	return out, nil
}

func readFull(r io.ReaderAt, p []byte, off int64, key string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptf("storage %q is truncated", key)
	}
	return err
}

func (t *Tensor) alloc(dt *dtype, n int) {
	if dt.float {
		t.F32 = make([]float32, n)
	} else {
		t.I64 = make([]int64, n)
	}
}

// rawBytes is the memory of F32 or I64 as bytes.
func (t *Tensor) rawBytes() []byte {
	switch {
	case len(t.F32) > 0:
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(t.F32))), 4*len(t.F32))
	case len(t.I64) > 0:
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(t.I64))), 8*len(t.I64))
	}
	return nil
}

var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// collapse drops size-1 dimensions and merges dimensions that are laid out
// one after the other, so a contiguous view becomes one dimension of stride 1.
// It always returns at least one dimension.
func collapse(shape, stride []int64) (sizes, strides []int64) {
	for i := range shape {
		if shape[i] == 1 {
			continue
		}
		if n := len(sizes); n > 0 && strides[n-1] == shape[i]*stride[i] {
			sizes[n-1] *= shape[i]
			strides[n-1] = stride[i]
			continue
		}
		sizes = append(sizes, shape[i])
		strides = append(strides, stride[i])
	}
	if len(sizes) == 0 {
		return []int64{1}, []int64{1}
	}
	return sizes, strides
}

// gather copies the view (sizes, strides, counted in elements from the start
// of raw) into out in C order, converting each element.
func gather(out *Tensor, raw []byte, dt *dtype, sizes, strides []int64) {
	n := len(sizes)
	inner, step := int(sizes[n-1]), int(strides[n-1])
	if n == 2 && step != 1 {
		gatherTiled(out, raw, dt, int(sizes[0]), inner, int(strides[0]), step)
		return
	}
	idx := make([]int64, n-1)
	numel := len(out.F32) + len(out.I64)
	src := 0
	for pos := 0; pos < numel; pos += inner {
		convertRow(out, pos, inner, raw, src, step, dt)
		for k := n - 2; k >= 0; k-- {
			idx[k]++
			src += int(strides[k])
			if idx[k] < sizes[k] {
				break
			}
			src -= int(strides[k] * sizes[k])
			idx[k] = 0
		}
	}
}

// gatherTiled copies a 2-D view whose rows are not contiguous (a transposed
// matrix, typically) in square tiles, so that both the reads and the writes
// of a tile stay in cache.
func gatherTiled(out *Tensor, raw []byte, dt *dtype, rows, cols, s0, s1 int) {
	const tile = 16 // small: power-of-two strides map a tile's lines to few cache sets
	for i0 := 0; i0 < rows; i0 += tile {
		i1 := min(i0+tile, rows)
		for j0 := 0; j0 < cols; j0 += tile {
			w := min(tile, cols-j0)
			for i := i0; i < i1; i++ {
				convertRow(out, i*cols+j0, w, raw, i*s0+j0*s1, s1, dt)
			}
		}
	}
}

// convertRow fills n elements of out from pos on with the elements of raw at
// src, src+step, ...
func convertRow(out *Tensor, pos, n int, raw []byte, src, step int, dt *dtype) {
	if dt.float {
		floatRow(out.F32[pos:pos+n], raw, src, step, dt.kind)
	} else {
		intRow(out.I64[pos:pos+n], raw, src, step, dt.kind)
	}
}

var le = binary.LittleEndian

// floatRow converts dst's elements from raw, starting at element src and
// stepping step elements.
func floatRow(dst []float32, raw []byte, src, step int, kind dtypeKind) {
	switch kind {
	case kFloat32:
		for j := range dst {
			dst[j] = math.Float32frombits(le.Uint32(raw[4*(src+j*step):]))
		}
	case kFloat64:
		for j := range dst {
			dst[j] = float32(math.Float64frombits(le.Uint64(raw[8*(src+j*step):])))
		}
	case kFloat16:
		tab := halfTable()
		for j := range dst {
			dst[j] = tab[le.Uint16(raw[2*(src+j*step):])]
		}
	case kBFloat16:
		for j := range dst {
			dst[j] = math.Float32frombits(uint32(le.Uint16(raw[2*(src+j*step):])) << 16)
		}
	}
}

func intRow(dst []int64, raw []byte, src, step int, kind dtypeKind) {
	switch kind {
	case kInt64:
		for j := range dst {
			dst[j] = int64(le.Uint64(raw[8*(src+j*step):]))
		}
	case kInt32:
		for j := range dst {
			dst[j] = int64(int32(le.Uint32(raw[4*(src+j*step):])))
		}
	case kInt16:
		for j := range dst {
			dst[j] = int64(int16(le.Uint16(raw[2*(src+j*step):])))
		}
	case kInt8:
		for j := range dst {
			dst[j] = int64(int8(raw[src+j*step]))
		}
	case kUint8:
		for j := range dst {
			dst[j] = int64(raw[src+j*step])
		}
	case kBool:
		for j := range dst {
			if raw[src+j*step] != 0 {
				dst[j] = 1
			} else {
				dst[j] = 0
			}
		}
	}
}

var halfTab struct {
	once sync.Once
	t    *[1 << 16]float32
}

// halfTable maps every float16 bit pattern to its float32 value.
func halfTable() *[1 << 16]float32 {
	halfTab.once.Do(func() {
		t := new([1 << 16]float32)
		for i := range t {
			t[i] = halfToFloat32(uint16(i))
		}
		halfTab.t = t
	})
	return halfTab.t
}

// halfToFloat32 converts an IEEE 754 binary16 value exactly: zeros,
// subnormals, infinities and NaN (payload kept) included.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: mant * 2^-24, normalised for float32
		e := uint32(127 - 14)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

func sameShape(a []int64, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != int64(b[i]) {
			return false
		}
	}
	return true
}
