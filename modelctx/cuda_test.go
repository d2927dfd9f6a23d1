package modelctx

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

func hasGPU() bool {
	_, err := os.Stat("/dev/nvidia0")
	return err == nil
}

// TestCUDA runs the golden prompt on the CUDA provider and compares with the
// reference. Without a GPU it checks the clear error instead; it skips only
// when a GPU is present but this onnxruntime build has no CUDA provider.
func TestCUDA(t *testing.T) {
	dir := goldenModel(t)
	m, err := Open(dir, WithDevice(runtime.CUDA, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in := golden.Load(t).Input("prompt")
	out, err := m.Forward(context.Background(), in.Rows)
	if !hasGPU() {
		if !errors.Is(err, runtime.ErrCUDAUnavailable) {
			t.Fatalf("no GPU here: want ErrCUDAUnavailable, got %v", err)
		}
		t.Skipf("SKIP: no CUDA GPU on this machine (the error is clear: %v)", err)
	}
	if errors.Is(err, runtime.ErrCUDAUnavailable) {
		t.Skipf("SKIP: a GPU is present but this onnxruntime has no usable CUDA provider: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "logits on cuda", out.Logits.Data, *in.Logits)
}
