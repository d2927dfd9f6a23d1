package analysis

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func TestGoldenDecomposition(t *testing.T) {
	w := golden.LoadWorkflows(t)
	m := openGolden(t)
	ctx := context.Background()
	c, err := m.Run(ctx, [][]int{w.DLA.Tokens})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.DecomposeResid(ctx, PerHead)
	if err != nil {
		t.Fatal(err)
	}
	ref := w.DLA.Decomposition
	if !slices.Equal(d.Labels, ref.Labels) {
		t.Fatalf("labels %v, want %v", d.Labels, ref.Labels)
	}
	w.Check(t, "components", d.Components.Data, ref.Components)
	w.Check(t, "final resid", d.Resid.Data, ref.FinalResid)
	t.Logf("sum of components - resid: %.3g", d.MaxError)
	scale, err := c.Get(hooks.Site{Point: hooks.LnFScale, Layer: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.Check(t, "ln_f scale", scale.Data, ref.LnFScale)
}

func TestGoldenLogitAttrs(t *testing.T) {
	w := golden.LoadWorkflows(t)
	m := openGolden(t)
	ctx := context.Background()
	c, err := m.Run(ctx, [][]int{w.DLA.Tokens})
	if err != nil {
		t.Fatal(err)
	}
	T := len(w.DLA.Tokens)
	for _, tc := range []struct {
		name   string
		ref    golden.DLACase
		per    Per
		metric Metric
	}{
		{"per_head", w.DLA.PerHead, PerHead, Metric{Kind: LogitDiff, Target: w.Target.ID, Distractor: w.Distractor.ID}},
		{"per_layer", w.DLA.PerLayer, PerLayer, Metric{Kind: LogitDiff, Target: w.Target.ID, Distractor: w.Distractor.ID}},
		{"per_head_target_only", w.DLA.PerHeadTargetOnly, PerHead, Metric{Kind: Logit, Target: w.Target.ID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := c.DecomposeResid(ctx, tc.per)
			if err != nil {
				t.Fatal(err)
			}
			a, err := c.LogitAttrs(d, tc.metric)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Labels, tc.ref.Labels) {
				t.Fatalf("labels %v, want %v", a.Labels, tc.ref.Labels)
			}
			w.Check(t, "all positions", a.Values.Data, tc.ref.AllPositions)
			last := a.At(0, T-1)
			sum := 0.0
			for k, v := range last {
				if math.Abs(v-tc.ref.LastPosition.Values[k]) > tc.ref.LastPosition.Tol {
					t.Errorf("%s: %v, want %v", a.Labels[k], v, tc.ref.LastPosition.Values[k])
				}
				sum += v
			}
			actual := float64(a.Actual.Data[T-1])
			if math.Abs(actual-tc.ref.LastPosition.Actual) > tc.ref.LastPosition.Tol || math.Abs(sum-actual) > 1e-5 {
				t.Errorf("sum %v, model %v, reference %v", sum, actual, tc.ref.LastPosition.Actual)
			}
		})
	}
}

func TestDecompositionBadInput(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	c, err := m.Run(ctx, [][]int{{3260, 5335, 290}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecomposeResid(ctx, PerPosition); err == nil {
		t.Error("per position decomposition: no error")
	}
	d, err := c.DecomposeResid(ctx, PerLayer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.LogitAttrs(d, Metric{Kind: Prob, Target: 1}); !errors.Is(err, ErrMetric) {
		t.Errorf("prob attribution: %v, want ErrMetric", err)
	}
	if _, err := c.LogitAttrs(d, Metric{Kind: Logit, Target: -1}); !errors.Is(err, ErrToken) {
		t.Errorf("bad target: %v, want ErrToken", err)
	}
	if _, err := c.HeadResults(2); !errors.Is(err, ErrLayer) {
		t.Errorf("head results of layer 2: %v, want ErrLayer", err)
	}
	// A decomposition missing a part fails its sum check.
	d.Components.Data[0] += 1
	if err := d.check(); !errors.Is(err, ErrDecomposition) {
		t.Errorf("broken decomposition: %v, want ErrDecomposition", err)
	}
}
