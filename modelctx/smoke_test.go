package modelctx

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

func TestRandomModelRuns(t *testing.T) {
	cfg := gpt2.Config{NLayers: 2, DModel: 64, NHeads: 4, DHead: 16, DFF: 256, NVocab: 1000, NCtx: 64}
	dir := filepath.Join(t.TempDir(), "m")
	if _, err := export.Write(context.Background(), gpt2.Random{Config: cfg, Seed: 1}, dir, export.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out, err := m.Forward(context.Background(), [][]int{{1, 2, 3, 4}, {5, 6}}, Capture(AllPoints))
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Logits.Shape; got[0] != 2 || got[1] != 4 || got[2] != 1000 {
		t.Fatalf("logits shape %v", got)
	}
	for _, v := range out.Logits.Data {
		if math.IsNaN(float64(v)) {
			t.Fatal("NaN logits")
		}
	}
	if n := len(out.Activations); n != 21*2+6 {
		t.Fatalf("captured %d sites", n)
	}
	t.Log(out.Activations[hooks.Site{Point: hooks.AttnQKLogits, Layer: 0}].Shape)
}
