package runtime

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// TestEngineCapture: captured sites come back in the reference layout (a
// permuted site transposed, a plain one viewed in place, after a writer's
// edit), the result owns them until Close, and a site the graph lacks is
// ErrNoPoint.
func TestEngineCapture(t *testing.T) {
	e := tinyEngine(t)
	ctx := context.Background()
	in := tinyInput()
	pre := hooks.Site{Point: hooks.MLPPreAct}
	qk := hooks.Site{Point: hooks.AttnQKLogits}
	h := hooks.New()
	h.Add(hooks.MLPPreAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		x.Data[0] = 100 // in place
		return x, nil
	})
	res, err := e.RunKeep(ctx, Request{Inputs: in, Outputs: []string{"y"}, Hooks: hooks.Snapshot(h), Capture: []hooks.Site{pre, qk}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Captured[pre]; got == nil || !slices.Equal(got.Data, []float32{100, 22, 33, 14, 25, 36}) {
		t.Fatalf("mlp.pre_act captured %v", got)
	}
	// y [1,2,3] = 2h, seen as [1,3,2].
	if got := res.Captured[qk]; got == nil || !slices.Equal(got.Shape, []int{1, 3, 2}) || !slices.Equal(got.Data, []float32{200, 28, 44, 50, 66, 72}) {
		t.Fatalf("permuted capture %v", got)
	}
	if !slices.Equal(res.Tensors["y"].F32, []float32{200, 44, 66, 28, 50, 72}) {
		t.Fatalf("y = %v", res.Tensors["y"].F32)
	}
	view := res.Captured[pre]
	res.Close()
	res.Close()
	if view.Data != nil {
		t.Fatal("a closed result's view still has data")
	}
	_, err = e.RunKeep(ctx, Request{Inputs: in, Outputs: []string{"y"}, Capture: []hooks.Site{{Point: hooks.AttnV}}})
	if !errors.Is(err, ErrNoPoint) {
		t.Fatalf("capture of a missing point: %v", err)
	}
}
