package torchpt

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/internal/hostile"
)

// FuzzLoad feeds mutated torch.save files to both loaders: no panic may
// escape, every error must wrap ErrCorrupt or ErrUnsupported, and a success
// must be self-consistent.
func FuzzLoad(f *testing.F) {
	seeds := []string{
		"model_views_misc/f16.pt", "model_views_misc/bf16_view.pt",
		"model_views_misc/legacy.pt", "model_views_misc/legacy_view.pt",
		"model/model_pieces/xf_layers.0.ln_1.weight.pt",
		"model/model_pieces/xf_layers.1.attn.q_proj.bias.pt",
		// The golden SAE files are 275 kB to 1 MB, too large for the fuzzer to
		// mutate and minimise quickly; this one has their structure (an
		// OrderedDict with _metadata, int64 buffer, nested activation dict).
		"../torchpt/small_sae_like.pt",
		"../torchpt/proto4.pt", "../torchpt/legacy_dict.pt", "../torchpt/shared.pt",
	}
	for _, s := range seeds {
		b, err := os.ReadFile(filepath.Join(golden.Dir(), s))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// The small hostile files: a broadcast view and a deep NONE stack.
	f.Add(hostile.StrideZero(false))
	f.Add(hostile.StrideZero(true))
	f.Add(hostile.NoneOps(1 << 20))
	old := maxExpandedBytes
	maxExpandedBytes = 1 << 18
	f.Cleanup(func() { maxExpandedBytes = old })
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "in.pt")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if tn, err := LoadTensor(path); err != nil {
			checkFuzzErr(t, err)
		} else {
			checkTensor(t, tn)
		}
		if sd, err := LoadStateDict(path); err != nil {
			checkFuzzErr(t, err)
		} else {
			for _, k := range sd.Keys {
				tn, isTensor := sd.Tensors[k]
				_, isValue := sd.Values[k]
				if isTensor == isValue {
					t.Fatalf("key %q: tensor %v, value %v", k, isTensor, isValue)
				}
				if isTensor {
					checkTensor(t, tn)
				}
			}
		}
	})
}

func checkFuzzErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
		t.Fatalf("error wraps neither sentinel: %v", err)
	}
}

func checkTensor(t *testing.T, tn *Tensor) {
	t.Helper()
	d := dtypeByName(tn.DType)
	if d == nil {
		t.Fatalf("dtype %q", tn.DType)
	}
	if d.float && len(tn.F32) != tn.Numel() || !d.float && len(tn.I64) != tn.Numel() {
		t.Fatalf("%s shape %v: %d float32, %d int64 values", tn.DType, tn.Shape, len(tn.F32), len(tn.I64))
	}
}
