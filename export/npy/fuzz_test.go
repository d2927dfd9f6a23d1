package npy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzRead feeds arbitrary bytes to ReadFrom. It must never panic; an error
// must be ErrCorrupt or ErrUnsupported (a bytes.Reader has no I/O errors); a
// success must give as many values as the shape holds and survive a
// WriteTo/ReadFrom round trip bit for bit.
func FuzzRead(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.npy")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, hdr := range []string{
		"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
		"{'shape':(),'descr':'<f8','fortran_order':False}",
		"{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': ((1), 1,)}",
		"{'descr': u'\\x3cf4', 'fortran_order': False, 'shape': (1L,)}",
	} {
		f.Add(npyFile(1, hdr, f4bytes(1, 2)))
		f.Add(npyFile(2, hdr, f4bytes(1)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		shape, data, err := ReadFrom(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error is neither ErrCorrupt nor ErrUnsupported: %v", err)
			}
			if shape != nil || data != nil {
				t.Fatalf("error with results: %v, %d values", shape, len(data))
			}
			return
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		if shape == nil || len(data) != n {
			t.Fatalf("shape %v with %d values", shape, len(data))
		}
		var buf bytes.Buffer
		if err := WriteTo(&buf, shape, data); err != nil {
			t.Fatal(err)
		}
		shape2, data2, err := ReadFrom(&buf)
		if err != nil || !slices.Equal(shape, shape2) || !sameBits(data, data2) {
			t.Fatalf("round trip: %v %v, %v", shape2, len(data2), err)
		}
	})
}
