package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestCUDAUnavailableNamesTheFix: where the library has no usable CUDA
// provider (a CPU-only core, no GPU), a CUDA engine's first run fails with
// ErrCUDAUnavailable and says how to fix it, not only ONNX Runtime's text.
func TestCUDAUnavailableNamesTheFix(t *testing.T) {
	e, err := NewEngine(tinyGraph(t), Options{Provider: CUDAProvider(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	in := map[string]*Tensor{"x": {Shape: []int64{1, 1, 2}, F32: []float32{1, 2}}}
	_, err = e.Run(context.Background(), Request{Inputs: in, Outputs: []string{"y"}})
	if err == nil {
		t.Skip("SKIP: a CUDA provider runs here; this test is for machines without one")
	}
	if !errors.Is(err, ErrCUDAUnavailable) {
		t.Fatalf("want ErrCUDAUnavailable, got %v", err)
	}
	for _, want := range []string{"make ort-gpu", "README's CUDA section"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name the fix (%q): %v", want, err)
		}
	}
	t.Log(err)
}
