package modelctx

import (
	"context"
	"errors"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// TestForwardRefusesHooksTheModelCannotCall: a layer filter beyond the
// model, or a point the model does not carry, is an error at Forward time,
// not a hook that silently never runs.
func TestForwardRefusesHooksTheModelCannotCall(t *testing.T) {
	m := openGolden(t)
	absent, err := hooks.RegisterPoint(hooks.PointSpec{Path: "test.absent_from_gpt2", PerLayer: true, Shape: []hooks.Dim{hooks.Batch, hooks.Seq, hooks.FF}, After: hooks.MLPPreAct})
	if err != nil {
		t.Fatal(err)
	}
	noop := func(*hooks.Context, *hooks.Tensor) error { return nil }
	for _, tc := range []struct {
		name string
		reg  func(h *hooks.Hooks)
		want error
	}{
		{"layer 5 of 2", func(h *hooks.Hooks) { h.Observe(hooks.MLPPostAct, noop, hooks.AtLayers(5)) }, hooks.ErrLayerRange},
		{"writer at layer 2 of 2", func(h *hooks.Hooks) { h.Add(hooks.MLPPostAct, set(0), hooks.AtLayers(2)) }, hooks.ErrLayerRange},
		{"point the model lacks", func(h *hooks.Hooks) { h.Observe(absent, noop) }, ErrNoPoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hooks.New()
			tc.reg(h)
			_, err := m.Forward(context.Background(), [][]int{{1, 2, 3}}, WithHooks(h))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := m.Forward(context.Background(), [][]int{{1, 2, 3}}); err != nil {
		t.Fatalf("the model is unusable after refused hooks: %v", err)
	}
}
