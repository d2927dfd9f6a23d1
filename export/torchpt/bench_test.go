package torchpt

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func benchFile(b *testing.B, rows, cols int) string {
	b.Helper()
	t := &Tensor{Shape: []int{rows, cols}, F32: make([]float32, rows*cols)}
	for i := range t.F32 {
		t.F32[i] = float32(i % 1000)
	}
	path := filepath.Join(b.TempDir(), "bench.pt")
	if err := Save(path, t); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkLoadTensor loads a contiguous 4096x4096 float32 piece (64 MiB):
// the storage bytes are read straight into the result.
func BenchmarkLoadTensor(b *testing.B) {
	path := benchFile(b, 4096, 4096)
	b.SetBytes(4096 * 4096 * 4)
	b.ResetTimer()
	for b.Loop() {
		if _, err := LoadTensor(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadTensorTransposed loads the same storage as a transposed view
// (stride (1, 4096)), which needs the storage bytes plus a gather.
func BenchmarkLoadTensorTransposed(b *testing.B) {
	const n = 4096
	dir := b.TempDir()
	pkl := viewPickle("FloatStorage", n*n, 0, []int64{n, n}, []int64{1, n})
	zipped := zipBytes(b, record{"archive/data.pkl", pkl}, record{"archive/data/0", make([]byte, 4*n*n)})
	path := filepath.Join(dir, "t.pt")
	if err := os.WriteFile(path, zipped, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(n * n * 4)
	b.ResetTimer()
	for b.Loop() {
		if _, err := LoadTensor(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadTensorSAESize loads a 32768x3072 float32 tensor (384 MiB, one
// GPT-2 small MLP SAE matrix). It writes that file first, so it only runs
// when ONNX_TDB_BIG_BENCH=1.
func BenchmarkLoadTensorSAESize(b *testing.B) {
	if ok, _ := strconv.ParseBool(os.Getenv("ONNX_TDB_BIG_BENCH")); !ok {
		b.Skip("SKIP: set ONNX_TDB_BIG_BENCH=1 to write and load a 384 MiB file")
	}
	path := benchFile(b, 32768, 3072)
	b.SetBytes(32768 * 3072 * 4)
	b.ResetTimer()
	for b.Loop() {
		if _, err := LoadTensor(path); err != nil {
			b.Fatal(err)
		}
	}
}
