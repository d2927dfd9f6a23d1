package runtime

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

func TestEnginePartialRuns(t *testing.T) {
	g := tinyGraph(t)
	g.Points[hooks.Site{Point: hooks.PostMLP, Layer: 0}] = PointRef{Tensor: "y"} // after h in call order
	e, err := NewEngine(g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	hSite := hooks.Site{Point: hooks.MLPPreAct, Layer: 0}
	called := 0
	obs := hooks.New()
	obs.Observe(hooks.PostMLP, func(*hooks.Context, *hooks.Tensor) error { called++; return nil })

	// Start at h with no x given: what computes h is not in the plan.
	h := &Tensor{Shape: []int64{1, 1, 3}, F32: []float32{1, 2, 3}}
	out, err := e.Run(ctx, Request{Inputs: map[string]*Tensor{"h": h}, Outputs: []string{"y"}, StartAt: &hSite, Hooks: hooks.Snapshot(obs)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out["y"].F32, []float32{2, 4, 6}) || called != 1 {
		t.Fatalf("start at h: y = %v, observer called %d times", out["y"].F32, called)
	}

	// Stop at h: y's hooks are not called.
	called = 0
	x := map[string]*Tensor{"x": {Shape: []int64{1, 1, 2}, F32: []float32{1, 0}}}
	out, err = e.Run(ctx, Request{Inputs: x, Outputs: []string{"h"}, StopAt: &hSite, Hooks: hooks.Snapshot(obs)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out["h"].F32, []float32{11, 22, 33}) || called != 0 {
		t.Fatalf("stop at h: h = %v, observer called %d times", out["h"].F32, called)
	}

	yT := hooks.Site{Point: hooks.AttnQKLogits, Layer: 0}
	for name, req := range map[string]Request{
		"start value missing":   {Inputs: x, Outputs: []string{"y"}, StartAt: &hSite},
		"start at a transposed": {Inputs: map[string]*Tensor{"y": h}, Outputs: []string{"y"}, StartAt: &yT},
		"stop before the start": {Inputs: map[string]*Tensor{"h": h}, Outputs: []string{"h"}, StartAt: &hSite, StopAt: &hSite},
		"site the model lacks":  {Inputs: x, Outputs: []string{"y"}, StopAt: &hooks.Site{Point: hooks.DeltaMLP, Layer: 0}},
	} {
		if _, err := e.Run(ctx, req); !errors.Is(err, ErrSpan) {
			t.Errorf("%s: error %v, want ErrSpan", name, err)
		}
	}
}
