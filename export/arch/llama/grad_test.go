package llama_test

import (
	"context"
	"math"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// TestBackwardMatchesFiniteDifferences takes the gradient of one logit at
// hook points all through the Llama graphs (the RMSNorm scales, RoPE'd q
// and k under grouped-query attention, the SwiGLU MLP) and checks entries
// against central differences of the forward pass, nudging the point's
// value with a writing hook.
func TestBackwardMatchesFiniteDifferences(t *testing.T) {
	_, tr := exportFixture(t, tinyGQA, 3)
	ctx := context.Background()
	rows := [][]int{{4, 9, 2, 33, 7}}
	const target = 11
	g, err := tr.Backward(ctx, rows, modelctx.LogitLoss(0, -1, target))
	if err != nil {
		t.Fatal(err)
	}
	logit := func(h *hooks.Hooks) float64 {
		out, err := tr.Forward(ctx, rows, modelctx.WithHooks(h))
		if err != nil {
			t.Fatal(err)
		}
		T, V := out.Logits.Shape[1], out.Logits.Shape[2]
		return float64(out.Logits.Data[(T-1)*V+target])
	}
	sites := []hooks.Site{
		{Point: hooks.ResidPostEmb, Layer: -1},
		{Point: hooks.LnAttnScale, Layer: 0},
		{Point: hooks.AttnQ, Layer: 0},
		{Point: hooks.AttnK, Layer: 1},
		{Point: hooks.AttnV, Layer: 0},
		{Point: hooks.MLPPreAct, Layer: 1},
		{Point: hooks.MLPPostAct, Layer: 0},
		{Point: hooks.PostLnF, Layer: -1},
	}
	const eps = 1e-2
	for _, s := range sites {
		gr := g.Grads[s]
		if gr == nil {
			t.Fatalf("no gradient at %s", s)
		}
		// Check the largest entry and a few spread over the tensor.
		idx := []int{argmaxAbs(gr.Data), len(gr.Data) / 3, len(gr.Data) - 1}
		for _, i := range idx {
			nudge := func(d float32) *hooks.Hooks {
				h := hooks.New()
				var opts []hooks.Option
				if s.Point.PerLayer() {
					opts = append(opts, hooks.AtLayers(s.Layer))
				}
				h.Add(s.Point, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
					x.Data[i] += d
					return x, nil
				}, opts...)
				return h
			}
			fd := (logit(nudge(eps)) - logit(nudge(-eps))) / (2 * eps)
			got := float64(gr.Data[i])
			if math.Abs(fd-got) > 2e-3+2e-2*math.Abs(fd) {
				t.Errorf("%s[%d]: backward %.5f, finite difference %.5f", s, i, got, fd)
			}
		}
	}
}

func argmaxAbs(v []float32) int {
	best := 0
	for i, x := range v {
		if math.Abs(float64(x)) > math.Abs(float64(v[best])) {
			best = i
		}
	}
	return best
}
