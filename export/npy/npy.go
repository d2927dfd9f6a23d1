package npy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

var (
	// ErrCorrupt means the data is not a well-formed .npy file: a bad magic
	// string, a header that does not parse or lacks a key, a negative or
	// overflowing shape, or data shorter (or, for Read, longer) than the
	// shape says.
	ErrCorrupt = errors.New("corrupt .npy data")
	// ErrUnsupported means a well-formed file that this package does not
	// read: another format version, fortran_order True, an unlisted dtype,
	// more than MaxDims dimensions, or a header over MaxHeaderLen bytes.
	ErrUnsupported = errors.New("unsupported .npy data")
	// ErrShape means Write or WriteTo got a shape that does not match the
	// data (or a negative dimension, or more than MaxDims).
	ErrShape = errors.New("shape does not match data")
)

const (
	// MaxDims is the most dimensions accepted (NumPy 2's limit).
	MaxDims = 64
	// MaxHeaderLen bounds the header read before parsing it.
	MaxHeaderLen = 1 << 20

	magic     = "\x93NUMPY"
	align     = 64 // NumPy's ARRAY_ALIGN
	growRoom  = 21 // NumPy's GROWTH_AXIS_MAX_DIGITS
	chunkSize = 1 << 16
)

// Write writes data with the given shape to path as a .npy file. It writes a
// temporary file in the same folder and renames it over path once complete,
// so readers never see a partial file.
func Write(path string, shape []int, data []float32) (err error) {
	if err := checkShape(shape, len(data)); err != nil {
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("npy: write %s: %w", path, err)
		}
	}()
	bw := bufio.NewWriterSize(f, chunkSize)
	if err := writeTo(bw, shape, data); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteTo writes data with the given shape to w in .npy format 1.0. A nil or
// empty shape is a scalar and needs exactly one value.
func WriteTo(w io.Writer, shape []int, data []float32) error {
	if err := checkShape(shape, len(data)); err != nil {
		return fmt.Errorf("npy: write: %w", err)
	}
	if err := writeTo(w, shape, data); err != nil {
		return fmt.Errorf("npy: write: %w", err)
	}
	return nil
}

func checkShape(shape []int, n int) error {
	if len(shape) > MaxDims {
		return fmt.Errorf("%w: %d dimensions, at most %d", ErrShape, len(shape), MaxDims)
	}
	want := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("%w: negative dimension in %v", ErrShape, shape)
		}
		if d != 0 && want > math.MaxInt/d {
			return fmt.Errorf("%w: shape %v is too large", ErrShape, shape)
		}
		want *= d
	}
	if want != n {
		return fmt.Errorf("%w: shape %v holds %d values, data has %d", ErrShape, shape, want, n)
	}
	return nil
}

func writeTo(w io.Writer, shape []int, data []float32) error {
	if _, err := w.Write(header(shape)); err != nil {
		return err
	}
	buf := make([]byte, 0, chunkSize)
	for len(data) > 0 {
		n := min(len(data), chunkSize/4)
		buf = buf[:0]
		for _, v := range data[:n] {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// header is numpy.save's format 1.0 header for a C-order float32 array.
func header(shape []int) []byte {
	var sb strings.Builder
	sb.WriteString("{'descr': '<f4', 'fortran_order': False, 'shape': (")
	for i, d := range shape {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(strconv.Itoa(d))
	}
	if len(shape) == 1 {
		sb.WriteByte(',')
	}
	sb.WriteString("), }")
	if len(shape) > 0 {
		sb.WriteString(strings.Repeat(" ", max(0, growRoom-len(strconv.Itoa(shape[0])))))
	}
	hlen := sb.Len() + 1 // with the final newline
	pad := align - (len(magic)+2+2+hlen)%align
	out := make([]byte, 0, len(magic)+4+hlen+pad)
	out = append(out, magic...)
	out = append(out, 1, 0)
	out = binary.LittleEndian.AppendUint16(out, uint16(hlen+pad))
	out = append(out, sb.String()...)
	out = append(out, strings.Repeat(" ", pad)...)
	return append(out, '\n')
}

// Read reads a .npy file. The file must hold exactly the data its header
// describes: short data and trailing bytes are both ErrCorrupt, found from
// the file size before any data is allocated.
func Read(path string) (shape []int, data []float32, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("npy: read: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("npy: read: %w", err)
	}
	br := bufio.NewReaderSize(f, chunkSize)
	h, err := readHeader(br)
	if err != nil {
		return nil, nil, fmt.Errorf("npy: read %s: %w", path, err)
	}
	hint := 0
	if st.Mode().IsRegular() {
		if have := st.Size() - h.offset; have != h.nbytes {
			return nil, nil, fmt.Errorf("npy: read %s: %w: shape %v %s needs %d data bytes, file has %d",
				path, ErrCorrupt, h.shape, h.descr, h.nbytes, have)
		}
		hint = h.numel
	}
	data, err = readData(br, h, hint)
	if err != nil {
		return nil, nil, fmt.Errorf("npy: read %s: %w", path, err)
	}
	return h.shape, data, nil
}

// ReadFrom reads one .npy array from r and stops after its data, so several
// arrays can be read from one stream. Memory grows with the data actually
// read, so a header claiming a huge shape over short data fails with
// ErrCorrupt without allocating for the claim.
func ReadFrom(r io.Reader) ([]int, []float32, error) {
	h, err := readHeader(r)
	if err != nil {
		return nil, nil, fmt.Errorf("npy: read: %w", err)
	}
	data, err := readData(r, h, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("npy: read: %w", err)
	}
	return h.shape, data, nil
}

// readData reads h.numel values and converts them to float32. hint is the
// capacity to allocate at once (the caller has checked the data is there).
func readData(r io.Reader, h arrayHeader, hint int) ([]float32, error) {
	// Without a hint, start at up to 1 MiB and grow with the data that arrives.
	out := make([]float32, 0, max(hint, min(h.numel, 1<<18)))
	buf := make([]byte, chunkSize/h.dtype.size*h.dtype.size)
	for left := h.numel; left > 0; {
		n := min(left, len(buf)/h.dtype.size)
		b := buf[:n*h.dtype.size]
		if _, err := io.ReadFull(r, b); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%w: data ends after %d of %d values", ErrCorrupt, len(out), h.numel)
			}
			return nil, err
		}
		if cap(out)-len(out) < n { // double, up to the size the header gives
			grown := make([]float32, len(out), min(max(2*cap(out), len(out)+n), h.numel))
			copy(grown, out)
			out = grown
		}
		out = out[:len(out)+n]
		h.dtype.decode(out[len(out)-n:], b)
		left -= n
	}
	return out, nil
}
