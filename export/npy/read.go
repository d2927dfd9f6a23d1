package npy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

type dtype struct {
	size   int
	decode func(dst []float32, src []byte) // len(src) == len(dst)*size
}

// elementwise makes a dtype from a one-value conversion.
func elementwise(size int, conv func([]byte) float32) dtype {
	return dtype{size, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = conv(src[i*size : i*size+size])
		}
	}}
}

// dtypes are the descr strings Read accepts, each converted to float32.
var dtypes = map[string]dtype{
	"<f4": {4, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	}},
	">f4": elementwise(4, func(b []byte) float32 { return math.Float32frombits(binary.BigEndian.Uint32(b)) }),
	"<f8": elementwise(8, func(b []byte) float32 { return float32(math.Float64frombits(binary.LittleEndian.Uint64(b))) }),
	">f8": elementwise(8, func(b []byte) float32 { return float32(math.Float64frombits(binary.BigEndian.Uint64(b))) }),
	"<i8": elementwise(8, func(b []byte) float32 { return float32(int64(binary.LittleEndian.Uint64(b))) }),
	">i8": elementwise(8, func(b []byte) float32 { return float32(int64(binary.BigEndian.Uint64(b))) }),
	"<i4": elementwise(4, func(b []byte) float32 { return float32(int32(binary.LittleEndian.Uint32(b))) }),
	">i4": elementwise(4, func(b []byte) float32 { return float32(int32(binary.BigEndian.Uint32(b))) }),
	"|i1": elementwise(1, func(b []byte) float32 { return float32(int8(b[0])) }),
	"|u1": elementwise(1, func(b []byte) float32 { return float32(b[0]) }),
	"|b1": elementwise(1, func(b []byte) float32 {
		if b[0] != 0 {
			return 1
		}
		return 0
	}),
}

type arrayHeader struct {
	shape  []int
	descr  string
	dtype  dtype
	numel  int
	nbytes int64 // numel * dtype.size
	offset int64 // bytes before the data: magic, version, length and header
}

// readHeader reads the magic string, version and header, and checks them.
func readHeader(r io.Reader) (arrayHeader, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return arrayHeader{}, truncated("magic string", err)
	}
	if string(pre[:6]) != magic {
		return arrayHeader{}, fmt.Errorf("%w: no .npy magic string (got %q)", ErrCorrupt, pre[:6])
	}
	major, minor := pre[6], pre[7]
	lenSize := 4
	switch {
	case major == 1 && minor == 0:
		lenSize = 2
	case (major == 2 || major == 3) && minor == 0:
	default:
		return arrayHeader{}, fmt.Errorf("%w: format version %d.%d", ErrUnsupported, major, minor)
	}
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:lenSize]); err != nil {
		return arrayHeader{}, truncated("header length", err)
	}
	hlen := int64(binary.LittleEndian.Uint32(lb[:]))
	if hlen > MaxHeaderLen {
		return arrayHeader{}, fmt.Errorf("%w: header of %d bytes, more than %d", ErrUnsupported, hlen, MaxHeaderLen)
	}
	text := make([]byte, hlen)
	if _, err := io.ReadFull(r, text); err != nil {
		return arrayHeader{}, truncated("header", err)
	}
	// Format 1.0 and 2.0 headers are latin-1 and 3.0 ones UTF-8; the keys and
	// the descr values we accept are ASCII, so the bytes are parsed as they are.
	v, err := parseLiteral(text, major <= 2)
	if err != nil {
		return arrayHeader{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	h, err := checkHeader(v)
	if err != nil {
		return arrayHeader{}, err
	}
	h.offset = int64(len(pre)+lenSize) + hlen
	return h, nil
}

func truncated(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated %s", ErrCorrupt, what)
	}
	return err
}

// checkHeader does NumPy's checks on the parsed dict and ours on the shape.
func checkHeader(v pyValue) (arrayHeader, error) {
	if v.kind != pyDict {
		return arrayHeader{}, fmt.Errorf("%w: header is a %s, not a dict", ErrCorrupt, v.kind)
	}
	fields := map[string]pyValue{}
	for i, k := range v.keys {
		fields[k] = v.vals[i]
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if _, ok := fields[k]; !ok {
			return arrayHeader{}, fmt.Errorf("%w: header has keys %q, want descr, fortran_order and shape", ErrCorrupt, v.keys)
		}
	}
	if len(fields) != 3 {
		return arrayHeader{}, fmt.Errorf("%w: header has keys %q, want descr, fortran_order and shape", ErrCorrupt, v.keys)
	}

	shape, numel, err := checkDims(fields["shape"])
	if err != nil {
		return arrayHeader{}, err
	}
	fo := fields["fortran_order"]
	if fo.kind != pyBool {
		return arrayHeader{}, fmt.Errorf("%w: fortran_order is a %s, not a bool", ErrCorrupt, fo.kind)
	}
	if fo.truth {
		return arrayHeader{}, fmt.Errorf("%w: fortran_order True (only C order is read)", ErrUnsupported)
	}
	d := fields["descr"]
	switch d.kind {
	case pyStr:
	case pyList, pyTuple:
		return arrayHeader{}, fmt.Errorf("%w: structured or subarray descr", ErrUnsupported)
	default:
		return arrayHeader{}, fmt.Errorf("%w: descr is a %s", ErrCorrupt, d.kind)
	}
	dt, ok := dtypes[d.str]
	if !ok {
		return arrayHeader{}, fmt.Errorf("%w: descr %q", ErrUnsupported, d.str)
	}
	return arrayHeader{shape: shape, descr: d.str, dtype: dt, numel: numel, nbytes: int64(numel) * int64(dt.size)}, nil
}

// checkDims reads the shape tuple and its element count, refusing counts
// above MaxInt/8, so that numel times any item size fits in an int64.
func checkDims(v pyValue) ([]int, int, error) {
	if v.kind != pyTuple {
		return nil, 0, fmt.Errorf("%w: shape is a %s, not a tuple", ErrCorrupt, v.kind)
	}
	if len(v.items) > MaxDims {
		return nil, 0, fmt.Errorf("%w: %d dimensions, at most %d", ErrUnsupported, len(v.items), MaxDims)
	}
	const maxNumel = math.MaxInt / 8
	shape := make([]int, len(v.items))
	numel := 1
	for i, it := range v.items {
		if it.kind != pyInt || it.num < 0 {
			return nil, 0, fmt.Errorf("%w: shape has a bad dimension at index %d", ErrCorrupt, i)
		}
		if it.num > maxNumel {
			return nil, 0, fmt.Errorf("%w: dimension %d is too large", ErrCorrupt, it.num)
		}
		shape[i] = int(it.num)
	}
	for _, d := range shape {
		if d != 0 && numel > maxNumel/d {
			return nil, 0, fmt.Errorf("%w: shape %v is too large", ErrCorrupt, shape)
		}
		numel *= d
	}
	return shape, numel, nil
}
