package runtime

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// On tinyGraph, y = 2 (x·W + b): d(sum(seed*y))/dh = 2 seed, and the
// logits site sees y transposed ([B,3,T]).
func TestBackwardOnTinyGraph(t *testing.T) {
	e := tinyEngine(t)
	in := tinyInput()
	root := hooks.Site{Point: hooks.AttnQKLogits, Layer: 0}
	h := hooks.Site{Point: hooks.MLPPreAct, Layer: 0}
	var rootShape []int
	seed := func(v *hooks.Tensor) (*hooks.Tensor, error) {
		rootShape = v.Shape
		g := hooks.Zeros(v.Shape...)
		for i := range g.Data {
			g.Data[i] = float32(i + 1) // [1,3,2] in the site's layout
		}
		return g, nil
	}
	res, err := e.Backward(context.Background(), BackwardRequest{Inputs: in, Root: root, Seed: seed, Grads: []hooks.Site{h, root}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rootShape) != "[1 3 2]" {
		t.Errorf("the loss saw the root as %v, want the site's layout [1 3 2]", rootShape)
	}
	// seed[b][c][t] = 2t+c+1 (+1 per element): dh[b][t][c] = 2*seed[b][c][t].
	if got := fmt.Sprint(res.Grads[h].Data); got != "[2 6 10 4 8 12]" {
		t.Errorf("d/dh = %v", got)
	}
	if got := fmt.Sprint(res.Grads[root].Data); got != "[1 2 3 4 5 6]" {
		t.Errorf("gradient at the root = %v (the seed, in the site's layout)", got)
	}

	// A bwd hook that replaces the gradient at the root cuts the graph
	// there; what it returns flows on. An observer at h sees the result.
	hs := hooks.New()
	hs.Add(root.Point, func(_ *hooks.Context, g *hooks.Tensor) (*hooks.Tensor, error) {
		return g, g.FillTrailing(0, 1) // token 1 at every channel of the [B,3,T] layout
	}, hooks.InStage(hooks.Bwd))
	var seen []float32
	hs.Observe(h.Point, func(_ *hooks.Context, g *hooks.Tensor) error { seen = append([]float32(nil), g.Data...); return nil }, hooks.InStage(hooks.Bwd))
	res, err = e.Backward(context.Background(), BackwardRequest{Inputs: in, Root: root, Seed: seed, Grads: []hooks.Site{h}, Hooks: hooks.Snapshot(hs)})
	if err != nil {
		t.Fatal(err)
	}
	// The hook zeroed token 1 of the [B,3,T] layout: h's second row.
	if got := fmt.Sprint(res.Grads[h].Data); got != "[2 6 10 0 0 0]" || fmt.Sprint(seen) != got {
		t.Errorf("after the hook: d/dh = %v, observer saw %v", got, seen)
	}

	// Rows: the loss gets [rows, last axis] and the rest gets no gradient.
	res, err = e.Backward(context.Background(), BackwardRequest{Inputs: in, Root: root, Grads: []hooks.Site{h},
		RootRows: [][]int{{0, 2}},
		SeedRows: func(v *hooks.Tensor) (*hooks.Tensor, error) {
			if fmt.Sprint(v.Shape) != "[1 2]" {
				t.Errorf("rows of shape %v", v.Shape)
			}
			g := hooks.Zeros(v.Shape...)
			g.Data[1] = 1 // channel 2, token 1
			return g, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Grads[h].Data); got != "[0 0 0 0 0 2]" {
		t.Errorf("rows: d/dh = %v", got)
	}
	if n := e.BackwardPlanCount(); n != 3 {
		t.Errorf("%d backward plans, want 3 (one per kind of request)", n)
	}
}

func TestBackwardErrors(t *testing.T) {
	e := tinyEngine(t)
	in := tinyInput()
	root := hooks.Site{Point: hooks.AttnQKLogits, Layer: 0}
	ctx := context.Background()
	if _, err := e.Backward(ctx, BackwardRequest{Inputs: in, Root: root}); !errors.Is(err, ErrSeed) {
		t.Errorf("no loss: %v", err)
	}
	bad := func(v *hooks.Tensor) (*hooks.Tensor, error) { return hooks.Zeros(1), nil }
	if _, err := e.Backward(ctx, BackwardRequest{Inputs: in, Root: root, Seed: bad}); !errors.Is(err, ErrSeed) {
		t.Errorf("gradient of the wrong shape: %v", err)
	}
	ok := func(v *hooks.Tensor) (*hooks.Tensor, error) { return hooks.Zeros(v.Shape...), nil }
	if _, err := e.Backward(ctx, BackwardRequest{Inputs: in, Root: hooks.Site{Point: hooks.MLPPostAct, Layer: 0}, Seed: ok}); !errors.Is(err, ErrNoPoint) {
		t.Errorf("unknown root: %v", err)
	}
	if _, err := e.Backward(ctx, BackwardRequest{Inputs: in, Root: root, Seed: ok, Grads: []hooks.Site{{Point: hooks.AttnQ, Layer: 0}}}); !errors.Is(err, ErrNoPoint) {
		t.Errorf("unknown gradient site: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Backward(cctx, BackwardRequest{Inputs: in, Root: root, Seed: ok}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	e.Close()
	if _, err := e.Backward(ctx, BackwardRequest{Inputs: in, Root: root, Seed: ok}); !errors.Is(err, ErrClosed) {
		t.Errorf("closed engine: %v", err)
	}
}
