package weightsfile

import (
	"bytes"
	"context"
	"errors"
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

func TestAppendStopsWhenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := CreateContext(ctx, filepath.Join(t.TempDir(), "w.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, _, err := w.AppendBytes(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, _, err := w.AppendBytes(make([]byte, 100)); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
	// A large tensor already being written stops within a few megabytes.
	ctx2, cancel2 := context.WithCancel(context.Background())
	w2, _ := CreateContext(ctx2, filepath.Join(t.TempDir(), "w2.bin"))
	defer w2.Close()
	_, err = w2.Append(64<<20, func(out io.Writer) error {
		out.Write(make([]byte, 8<<20))
		cancel2()
		_, err := out.Write(make([]byte, 56<<20))
		return err
	})
	if !errors.Is(err, context.Canceled) || w2.Size() > 16<<20 {
		t.Fatalf("err %v after %d bytes", err, w2.Size())
	}
}
