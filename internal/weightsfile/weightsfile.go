package weightsfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"unsafe"
)

// Alignment of every tensor in the file (a page).
const Alignment = 4096

// Writer appends tensors to a weights file.
type Writer struct {
	f   *os.File
	w   *bufio.Writer
	off int64
}

// Create starts a weights file at path.
func Create(path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &Writer{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

// counter counts what fill writes.
type counter struct{ w *Writer }

func (c counter) Write(p []byte) (int, error) {
	n, err := c.w.w.Write(p)
	c.w.off += int64(n)
	return n, err
}

// Append writes one tensor at the next aligned offset: fill writes its
// bytes, which must come to want bytes. It returns where they went.
func (w *Writer) Append(want int64, fill func(io.Writer) error) (offset int64, err error) {
	if pad := (Alignment - w.off%Alignment) % Alignment; pad > 0 {
		if _, err := (counter{w}).Write(make([]byte, pad)); err != nil {
			return 0, err
		}
	}
	offset = w.off
	if err := fill(counter{w}); err != nil {
		return 0, err
	}
	if got := w.off - offset; got != want {
		return 0, fmt.Errorf("%d bytes written, the tensor has %d", got, want)
	}
	return offset, nil
}

// AppendBytes writes p as one tensor and returns its offset and length.
func (w *Writer) AppendBytes(p []byte) (offset, length int64, err error) {
	offset, err = w.Append(int64(len(p)), func(out io.Writer) error {
		_, err := out.Write(p)
		return err
	})
	return offset, int64(len(p)), err
}

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.off }

// Close flushes, syncs and closes the file.
func (w *Writer) Close() error {
	err := w.w.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Bytes views float32 or int64 data as its little-endian bytes, without a
// copy (every platform Go and ONNX Runtime share here is little-endian).
func Bytes[T float32 | int64](v []T) []byte {
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*int(unsafe.Sizeof(zero)))
}

func init() {
	x := uint16(1)
	if *(*byte)(unsafe.Pointer(&x)) != 1 {
		panic("onnx-tdb needs a little-endian machine")
	}
}
