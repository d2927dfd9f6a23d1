package modelctx

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
)

// goldenModel exports the golden checkpoint once per test binary.
func goldenModel(t testing.TB) string { return goldenmodel.Dir(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	goldenmodel.Cleanup()
	removeTempDirs()
	os.Exit(code)
}

func openGolden(t testing.TB) *Transformer {
	t.Helper()
	m, err := Open(goldenModel(t), WithDevice(goldenmodel.Device(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func padSideOf(in *golden.Input) PadSide {
	if in.PadSide != nil && *in.PadSide == "left" {
		return PadLeft
	}
	return PadRight
}

// lastLogits picks each row's logits at its last real position.
func lastLogits(lg *hooks.Tensor, last []int) []float32 {
	return golden.LastLogits(lg.Shape, lg.Data, last)
}

func TestGoldenForwardEveryPoint(t *testing.T) {
	c := golden.Load(t)
	m := openGolden(t)
	for _, in := range c.Inputs {
		t.Run(in.Name, func(t *testing.T) {
			out, err := m.Forward(context.Background(), in.Rows, WithPad(padSideOf(&in)), Capture(AllPoints))
			if err != nil {
				t.Fatal(err)
			}
			if in.Logits != nil {
				golden.Check(t, "logits", out.Logits.Data, *in.Logits)
			}
			if in.LogitsLast != nil {
				golden.Check(t, "logits_last", lastLogits(out.Logits, in.LastRealPosition), *in.LogitsLast)
			}
			n := 0
			for _, a := range in.Activations {
				p, err := hooks.Parse(a.Hook)
				if err != nil {
					t.Fatal(err)
				}
				site := hooks.Site{Point: p, Layer: -1}
				if a.Layer != nil {
					site.Layer = *a.Layer
				}
				got, ok := out.Activations[site]
				if !ok {
					t.Errorf("%s not captured", site)
					continue
				}
				if fmt.Sprint(got.Shape) != fmt.Sprint(a.Shape) {
					t.Errorf("%s: shape %v, want %v", site, got.Shape, a.Shape)
					continue
				}
				golden.Check(t, site.String(), got.Data, a.Tensor)
				n++
			}
			if n != len(in.Activations) || n < 21*2+5 {
				t.Errorf("compared %d sites of %d", n, len(in.Activations))
			}
		})
	}
}
