package weightsfile

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.bin")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	a := []float32{1, 2, 3}
	b := []int64{-1, 7}
	offA, nA, err := w.AppendBytes(Bytes(a))
	if err != nil || offA != 0 || nA != 12 {
		t.Fatalf("first tensor at %d, %d bytes, %v", offA, nA, err)
	}
	offB, nB, err := w.AppendBytes(Bytes(b))
	if err != nil || offB != Alignment || nB != 16 {
		t.Fatalf("second tensor at %d, %d bytes, %v; want offset %d", offB, nB, err, Alignment)
	}
	// A fill that writes the wrong number of bytes is an error.
	if _, err := w.Append(8, func(out io.Writer) error { _, err := out.Write([]byte{1, 2, 3}); return err }); err == nil {
		t.Fatal("short tensor accepted")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[offA:offA+nA], Bytes(a)) || !bytes.Equal(data[offB:offB+nB], Bytes(b)) {
		t.Fatal("tensor bytes differ from what was written")
	}
	if !bytes.Equal(Bytes([]float32{1}), []byte{0, 0, 0x80, 0x3f}) {
		t.Fatalf("Bytes is not the little-endian view: %v", Bytes([]float32{1}))
	}
}
