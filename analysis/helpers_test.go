package analysis

import (
	"os"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

func TestMain(m *testing.M) {
	code := m.Run()
	goldenmodel.Cleanup()
	os.Exit(code)
}

// openGolden opens the golden model with analyses over it.
func openGolden(t testing.TB) *Model {
	t.Helper()
	tr, err := modelctx.Open(goldenmodel.Dir(t), modelctx.WithDevice(goldenmodel.Device(t)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(tr)
	if err != nil {
		tr.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		tr.Close()
	})
	return m
}

// flat flattens a table into float32 values, row-major.
func flat(rows [][]float64) []float32 {
	var out []float32
	for _, r := range rows {
		for _, v := range r {
			out = append(out, float32(v))
		}
	}
	return out
}

// checkTable compares a table with a reference within the golden rule:
// absolute, or after dividing both by max_abs ("relative").
func checkTable(t *testing.T, w *golden.Workflows, name string, got []float32, tn golden.Tensor, tol float64, relative bool) {
	t.Helper()
	want := w.Read(t, tn)
	if relative {
		got = scaled(got, 1/tn.MaxAbs)
		want = scaled(want, 1/tn.MaxAbs)
		tol = 1e-4 + 2e-5
	}
	if worst, fail := golden.Diff(got, want, tol); fail != "" {
		t.Errorf("%s: %s", name, fail)
	} else {
		t.Logf("%s: worst |diff| %.3g (tol %.3g)", name, worst, tol)
	}
}

func scaled(v []float32, k float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) * k)
	}
	return out
}
