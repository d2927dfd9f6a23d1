package modelctx

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// TestForeignGPT2GoldenGradients differentiates GPT-2 as torch exported it
// (one graph, Einsum attention, the hook points mapped by hookmap.json) and
// checks the gradients at its mapped points against the original's.
func TestForeignGPT2GoldenGradients(t *testing.T) {
	m := openForeign(t)
	c := golden.Load(t)
	in := c.Input("prompt")
	tg := in.Grads.Target
	g, err := m.Backward(context.Background(), in.Rows, LogitLoss(tg.Batch, tg.Position, tg.Token))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range in.Grads.Tensors {
		s := gradSite(t, a)
		got, ok := g.Grads[s]
		if !ok {
			continue // not mapped in this graph
		}
		if fmt.Sprint(got.Shape) != fmt.Sprint(a.Shape) {
			t.Errorf("%s: shape %v, want %v", s, got.Shape, a.Shape)
			continue
		}
		golden.Check(t, "grad "+s.String(), got.Data, a.Tensor)
		n++
	}
	if n < 20 {
		t.Errorf("compared %d gradients", n)
	}
	t.Logf("%d golden gradients compared", n)
}

// TestForeignLlamaDirectionalDerivative checks the gradient through a
// Llama-style graph (RMSNorm, rotary embeddings with Slice, SwiGLU) against
// finite differences of the loss along a direction at resid.post_emb.
func TestForeignLlamaDirectionalDerivative(t *testing.T) {
	m := openLlama(t)
	rows := [][]int{{5, 6, 7, 8, 9}}
	postEmb := hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}
	if !m.HasSite(postEmb) {
		t.Skip("SKIP: the llama graph maps no resid.post_emb")
	}
	for _, loss := range []Loss{LogitLoss(0, -1, 3), ProbsLoss(3, 4)} {
		g, err := m.Backward(context.Background(), rows, loss, GradsAt(&Filter{Points: []hooks.Point{hooks.ResidPostEmb}}))
		if err != nil {
			t.Fatal(err)
		}
		ge := g.Grads[postEmb]
		dir := make([]float32, len(ge.Data))
		an := 0.0
		for i := range dir {
			dir[i] = (float32((i*7919)%13) - 6) / 6
			an += float64(ge.Data[i]) * float64(dir[i])
		}
		const e = 1e-3
		num := (lossValue(t, m, rows, loss, dir, e) - lossValue(t, m, rows, loss, dir, -e)) / (2 * e)
		if math.Abs(an-num) > 2e-3+2e-2*math.Abs(num) || an == 0 {
			t.Errorf("%s: directional derivative %.6g, finite difference %.6g", loss, an, num)
		}
	}
}
