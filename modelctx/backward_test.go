package modelctx

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func gradSite(t *testing.T, a golden.Activation) hooks.Site {
	t.Helper()
	p, err := hooks.Parse(a.Hook)
	if err != nil {
		t.Fatal(err)
	}
	s := hooks.Site{Point: p, Layer: -1}
	if a.Layer != nil {
		s.Layer = *a.Layer
	}
	return s
}

// TestGoldenGradientsEveryPoint checks d logits[batch, position, token] /
// d value at every hook point of every layer against the original's
// gradients (captured there with bwd hooks).
func TestGoldenGradientsEveryPoint(t *testing.T) {
	c := golden.Load(t)
	m := openGolden(t)
	n := 0
	for _, in := range c.Inputs {
		if in.Grads == nil {
			continue
		}
		in := in
		t.Run(in.Name, func(t *testing.T) {
			tg := in.Grads.Target
			g, err := m.Backward(context.Background(), in.Rows, LogitLoss(tg.Batch, tg.Position, tg.Token), WithPad(padSideOf(&in)))
			if err != nil {
				t.Fatal(err)
			}
			// The same with the logits computed in full (a capture at the
			// logits takes the engine off its rows-only path).
			full, err := m.Backward(context.Background(), in.Rows, LogitLoss(tg.Batch, tg.Position, tg.Token), WithPad(padSideOf(&in)),
				Capture(&Filter{Points: []hooks.Point{hooks.Logits}}))
			if err != nil {
				t.Fatal(err)
			}
			if g.Logits != nil || full.Logits == nil {
				t.Fatalf("logits computed in full: rows-only path %v, captured %v", g.Logits != nil, full.Logits != nil)
			}
			V := full.Logits.Shape[2]
			if want := float64(full.Logits.Data[(tg.Batch*full.Logits.Shape[1]+tg.Position)*V+tg.Token]); g.Loss != want || full.Loss != want {
				t.Errorf("loss %v and %v, want the logit %v", g.Loss, full.Loss, want)
			}
			for s, x := range full.Grads {
				if d := maxDiff(x.Data, g.Grads[s].Data, 1); d > 1e-5 {
					t.Errorf("%s: the two paths differ by %g", s, d)
				}
			}
			for _, a := range in.Grads.Tensors {
				s := gradSite(t, a)
				got, ok := g.Grads[s]
				if !ok {
					t.Errorf("no gradient at %s", s)
					continue
				}
				if fmt.Sprint(got.Shape) != fmt.Sprint(a.Shape) {
					t.Errorf("%s: shape %v, want %v", s, got.Shape, a.Shape)
					continue
				}
				golden.Check(t, "grad "+s.String(), got.Data, a.Tensor)
				n++
			}
			if len(in.Grads.Tensors) < 20*2+5 {
				t.Errorf("only %d golden gradients", len(in.Grads.Tensors))
			}
		})
	}
	if n == 0 {
		t.Fatal("no golden gradients compared")
	}
}

// lossValue evaluates a loss on a plain forward pass with post_emb moved by
// e*dir (a fwd write hook).
func lossValue(t *testing.T, m *Transformer, rows [][]int, loss Loss, dir []float32, e float32, extra ...*hooks.Hooks) float64 {
	t.Helper()
	h := hooks.New()
	h.Add(hooks.ResidPostEmb, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		for i := range x.Data {
			x.Data[i] += e * dir[i]
		}
		return x, nil
	})
	opts := []ForwardOption{WithHooks(h), WithHooks(extra...)}
	if loss.Kind == LossActivation {
		opts = append(opts, Capture(&Filter{Points: []hooks.Point{loss.Site.Point}, Layers: layersOf(loss.Site)}))
	}
	out, err := m.Forward(context.Background(), rows, opts...)
	if err != nil {
		t.Fatal(err)
	}
	v := out.Logits
	if loss.Kind == LossActivation {
		v = out.Activations[loss.Site]
	}
	val, _, err := loss.grad(v, out.Pad)
	if err != nil {
		t.Fatal(err)
	}
	return val
}

func layersOf(s hooks.Site) []int {
	if s.Layer < 0 {
		return nil
	}
	return []int{s.Layer}
}

// TestBackwardDirectionalDerivative checks every loss end to end: the
// gradient at resid.post_emb against a central difference of the loss along
// a random direction, the model run forward with post_emb moved.
func TestBackwardDirectionalDerivative(t *testing.T) {
	c := golden.Load(t)
	m := openGolden(t)
	in := c.Input("batch_right")
	rows := in.Rows
	postEmb := hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}
	losses := []Loss{
		LogitLoss(1, -1, 464),
		LogitDiffLoss([]int{464, 262}, []int{13}),
		LogitMinusMeanLoss(464),
		ProbsLoss(464, 262, 464),
		ActivationLoss(hooks.Site{Point: hooks.MLPPostAct, Layer: 1}, 0, 5, 7),
		ActivationLoss(hooks.Site{Point: hooks.AttnQKProbs, Layer: 1}, 1, 4, 2, 3),
	}
	for _, loss := range losses {
		t.Run(loss.String(), func(t *testing.T) {
			g, err := m.Backward(context.Background(), rows, loss, GradsAt(&Filter{Points: []hooks.Point{hooks.ResidPostEmb}}))
			if err != nil {
				t.Fatal(err)
			}
			ge := g.Grads[postEmb]
			dir := make([]float32, len(ge.Data))
			for i := range dir {
				dir[i] = (float32((i*7919)%13) - 6) / 6
			}
			an := 0.0
			for i, x := range ge.Data {
				an += float64(x) * float64(dir[i])
			}
			const e = 1e-4
			num := (lossValue(t, m, rows, loss, dir, e) - lossValue(t, m, rows, loss, dir, -e)) / (2 * e)
			t.Logf("directional derivative %.6g, finite difference %.6g", an, num)
			if math.Abs(an-num) > 2e-3+2e-2*math.Abs(num) || an == 0 {
				t.Errorf("directional derivative %.6g, finite difference %.6g", an, num)
			}
			if v := lossValue(t, m, rows, loss, dir, 0); math.Abs(v-g.Loss) > 1e-5+1e-5*math.Abs(v) {
				t.Errorf("loss %v, forward gives %v", g.Loss, v)
			}
		})
	}
}

func TestBackwardHooksReadAndReplace(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{464, 2068, 7586, 21831, 18045}}
	loss := LogitLoss(0, -1, 0)
	postEmb := hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}
	base, err := m.Backward(context.Background(), rows, loss)
	if err != nil {
		t.Fatal(err)
	}
	// A bwd observer sees the gradient the result reports; a writer that
	// doubles the gradient at post_ln_f doubles every gradient upstream.
	h := hooks.New()
	var seen *hooks.Tensor
	var order []string
	h.Observe(hooks.MLPPostAct, func(c *hooks.Context, x *hooks.Tensor) error {
		if c.Layer() == 1 {
			seen = x.Clone()
		}
		order = append(order, c.Site.String())
		return nil
	}, hooks.InStage(hooks.Bwd))
	h.Add(hooks.PostLnF, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		y := x.Clone()
		for i := range y.Data {
			y.Data[i] *= 2
		}
		return y, nil
	}, hooks.InStage(hooks.Bwd))
	g, err := m.Backward(context.Background(), rows, loss, WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != "[mlp.post_act@1 mlp.post_act@0]" {
		t.Errorf("bwd hooks ran in order %v, want layer 1 then 0", order)
	}
	postLnF := hooks.Site{Point: hooks.PostLnF, Layer: -1}
	if d := maxDiff(g.Grads[postLnF].Data, base.Grads[postLnF].Data, 1); d > 0 {
		t.Errorf("gradient at the hooked site itself changed by %g (it is reported before its hooks)", d)
	}
	if d := maxDiff(seen.Data, scaled(base.Grads[hooks.Site{Point: hooks.MLPPostAct, Layer: 1}].Data, 2), 1); d > 1e-5 {
		t.Errorf("observer at mlp.post_act@1: off by %g from twice the plain gradient", d)
	}
	if d := maxDiff(g.Grads[postEmb].Data, scaled(base.Grads[postEmb].Data, 2), 1); d > 1e-4 {
		t.Errorf("post_emb gradient off by %g from twice the plain one", d)
	}
	// Zeroing the gradient at post_attn@0 cuts every path from the loss to
	// what comes before it: layer 0's attention and post_emb get zero.
	h2 := hooks.New()
	h2.Add(hooks.PostAttn, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		return x, x.FillTrailing(0)
	}, hooks.InStage(hooks.Bwd), hooks.AtLayers(0))
	g2, err := m.Backward(context.Background(), rows, loss, WithHooks(h2))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []hooks.Site{{Point: hooks.DeltaAttn, Layer: 0}, {Point: hooks.AttnQ, Layer: 0}, postEmb} {
		if d := maxDiff(g2.Grads[s].Data, make([]float32, len(g2.Grads[s].Data)), 1); d != 0 {
			t.Errorf("%s: gradient %g after ablating the gradient at post_attn@0", s, d)
		}
	}
	if d := maxDiff(g2.Grads[hooks.Site{Point: hooks.PostAttn, Layer: 0}].Data, base.Grads[hooks.Site{Point: hooks.PostAttn, Layer: 0}].Data, 1); d != 0 {
		t.Errorf("post_attn@0 reported %g off the plain gradient", d)
	}
}

func scaled(v []float32, k float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * k
	}
	return out
}

func maxDiff(a, b []float32, _ int) float64 {
	w := 0.0
	for i := range a {
		w = math.Max(w, math.Abs(float64(a[i])-float64(b[i])))
	}
	return w
}

// TestBackwardStopGradientAtScale: with ln_f's scale detached, the gradient
// at post_mean_subtraction is the gradient at post_scale divided by scale.
func TestBackwardStopGradientAtScale(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{464, 2068, 7586, 21831, 18045}}
	g, err := m.Backward(context.Background(), rows, LogitLoss(0, -1, 0), DetachLayerNormScale(), DetachQKV(),
		Capture(&Filter{Points: []hooks.Point{hooks.LnFScale}}))
	if err != nil {
		t.Fatal(err)
	}
	s := g.Activations[hooks.Site{Point: hooks.LnFScale, Layer: -1}]
	gy := g.Grads[hooks.Site{Point: hooks.LnFPostScale, Layer: -1}]
	gx := g.Grads[hooks.Site{Point: hooks.LnFPostMeanSubtraction, Layer: -1}]
	D := gy.Shape[2]
	for i := range gx.Data {
		want := gy.Data[i] / s.Data[i/D]
		if math.Abs(float64(gx.Data[i]-want)) > 1e-5 {
			t.Fatalf("post_mean_subtraction[%d] = %g, want %g", i, gx.Data[i], want)
		}
	}
	// The scale's own gradient is still reported, and nothing flows from
	// q/k/v into post_ln_attn.
	if gs := g.Grads[hooks.Site{Point: hooks.LnFScale, Layer: -1}]; maxDiff(gs.Data, make([]float32, len(gs.Data)), 1) == 0 {
		t.Error("detached scale has a zero gradient")
	}
	for l := 0; l < 2; l++ {
		if gp := g.Grads[hooks.Site{Point: hooks.PostLnAttn, Layer: l}]; maxDiff(gp.Data, make([]float32, len(gp.Data)), 1) != 0 {
			t.Errorf("post_ln_attn@%d has a gradient with q, k and v detached", l)
		}
	}
	plain, err := m.Backward(context.Background(), rows, LogitLoss(0, -1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if maxDiff(plain.Grads[hooks.Site{Point: hooks.LnFPostMeanSubtraction, Layer: -1}].Data, gx.Data, 1) < 1e-3 {
		t.Error("detaching the scale changed nothing")
	}
}

func TestBackwardActivationLossAndZeros(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{464, 2068, 7586, 21831, 18045}}
	site := hooks.Site{Point: hooks.MLPPostAct, Layer: 0}
	g, err := m.Backward(context.Background(), rows, ActivationLoss(site, 0, 3, 11))
	if err != nil {
		t.Fatal(err)
	}
	at := g.Grads[site]
	for i, x := range at.Data {
		want := float32(0)
		if i == at.Offset(0, 3, 11) {
			want = 1
		}
		if x != want {
			t.Fatalf("gradient at the grabbed site [%d] = %g", i, x)
		}
	}
	for _, s := range []hooks.Site{{Point: hooks.PostMLP, Layer: 0}, {Point: hooks.AttnQ, Layer: 1}, {Point: hooks.Logits, Layer: -1}} {
		if d := maxDiff(g.Grads[s].Data, make([]float32, len(g.Grads[s].Data)), 1); d != 0 {
			t.Errorf("%s downstream of the grabbed site has gradient %g", s, d)
		}
	}
	if g.Logits != nil {
		t.Error("logits returned for an activation loss")
	}
	// Zero loss: zero everywhere, unless a bwd hook writes a gradient.
	h := hooks.New()
	h.Add(hooks.DeltaMLP, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		return x, x.FillTrailing(1)
	}, hooks.InStage(hooks.Bwd), hooks.AtLayers(1))
	z, err := m.Backward(context.Background(), rows, ZeroLoss(), WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(z.Grads[hooks.Site{Point: hooks.PostMLP, Layer: 1}].Data, make([]float32, 5*64), 1); d != 0 {
		t.Errorf("zero loss: gradient %g at post_mlp@1", d)
	}
	if d := maxDiff(z.Grads[hooks.Site{Point: hooks.MLPPostAct, Layer: 1}].Data, make([]float32, 5*256), 1); d == 0 {
		t.Error("zero loss: a gradient written at delta_mlp@1 did not reach mlp.post_act@1")
	}
}

func TestBackwardPlansAreCached(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{1, 2, 3}}
	for i := 0; i < 3; i++ {
		if _, err := m.Backward(context.Background(), rows, LogitLoss(0, -1, 5)); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.Engine().BackwardPlanCount(); n != 1 {
		t.Errorf("%d backward plans for one kind of request", n)
	}
	if _, err := m.Backward(context.Background(), rows, ActivationLoss(hooks.Site{Point: hooks.Logits, Layer: -1}, 0, 9, 1)); err == nil {
		t.Error("out-of-range activation index accepted")
	}
	if _, err := m.Backward(context.Background(), rows, LogitLoss(3, -1, 5)); err == nil {
		t.Error("out-of-range row accepted")
	}
}

// TestBackwardThroughASpliceWithItsVJP: a writing fwd2 hook (a stand-in for
// an autoencoder splice) that doubles mlp.post_act@1, with its VJP
// registered through hooks.VJPOf, is differentiated through; the gradient
// hooks at the point see the gradient with respect to the value entering
// fwd2. Without the VJP the splice is the identity to the backward pass.
func TestBackwardThroughASpliceWithItsVJP(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{464, 2068, 7586, 21831, 18045}}
	loss := LogitLoss(0, -1, 0)
	site := hooks.Site{Point: hooks.MLPPostAct, Layer: 1}
	double := func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		y := x.Clone()
		for i := range y.Data {
			y.Data[i] *= 2
		}
		return y, nil
	}
	splice := hooks.New()
	splice.Add(site.Point, double, hooks.InStage(hooks.Fwd2), hooks.AtLayers(1))
	vjp := hooks.New()
	vjp.Add(site.Point, double, hooks.InStage(hooks.Bwd), hooks.VJPOf(hooks.Fwd2), hooks.AtLayers(1))
	var seen *hooks.Tensor
	obs := hooks.New()
	obs.Observe(site.Point, func(_ *hooks.Context, x *hooks.Tensor) error { seen = x.Clone(); return nil },
		hooks.InStage(hooks.Bwd), hooks.AtLayers(1))
	postEmb := hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}
	dirDeriv := func(hs ...*hooks.Hooks) (float64, *Grads) {
		g, err := m.Backward(context.Background(), rows, loss, WithHooks(hs...))
		if err != nil {
			t.Fatal(err)
		}
		an := 0.0
		for i, x := range g.Grads[postEmb].Data {
			an += float64(x) * float64((i*7919)%13-6) / 6
		}
		return an, g
	}
	dir := make([]float32, 5*64)
	for i := range dir {
		dir[i] = float32((i*7919)%13-6) / 6
	}
	const e = 1e-4
	num := (lossValue(t, m, rows, loss, dir, e, splice) - lossValue(t, m, rows, loss, dir, -e, splice)) / (2 * e)
	with, g := dirDeriv(splice, vjp, obs)
	if math.Abs(with-num) > 2e-3+2e-2*math.Abs(num) {
		t.Errorf("with the VJP: directional derivative %.6g, finite difference %.6g", with, num)
	}
	if d := maxDiff(seen.Data, g.Grads[site].Data, 1); d != 0 {
		t.Errorf("the reported gradient at %s is not what its gradient hooks saw (off by %g)", site, d)
	}
	if d := maxDiff(seen.Data, make([]float32, len(seen.Data)), 1); d == 0 {
		t.Error("zero gradient at the splice")
	}
	without, _ := dirDeriv(splice)
	if math.Abs(without-num) < 1e-2*math.Abs(num) {
		t.Errorf("without the VJP the splice should look like the identity: %.6g vs %.6g", without, num)
	}
}

// TestBackwardThroughAForwardEdit: with head 1 of attn.qk_probs@0 halved
// in the forward pass (a fwd writer with its VJP, hooks.VJPOf) and head 2
// ablated there (with the same ablation on its gradient, so the ablated
// entries pass none, as in the original), the gradient matches finite
// differences of the edited model. The softmax's gradient must use the
// probabilities it computed, not the edited ones the hooks left.
func TestBackwardThroughAForwardEdit(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{464, 2068, 7586, 21831, 18045}}
	loss := LogitLoss(0, -1, 0)
	scale := func(head int, k float32) hooks.Func {
		return func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
			H := x.Shape[3] // [B,T,Tk,H]
			for i := head; i < len(x.Data); i += H {
				x.Data[i] *= k
			}
			return x, nil
		}
	}
	fwd := hooks.New()
	fwd.Add(hooks.AttnQKProbs, scale(1, 0.5), hooks.AtLayers(0))
	fwd.Add(hooks.AttnQKProbs, scale(2, 0), hooks.AtLayers(0))
	bwd := hooks.New()
	bwd.Add(hooks.AttnQKProbs, scale(1, 0.5), hooks.InStage(hooks.Bwd), hooks.VJPOf(hooks.Fwd), hooks.AtLayers(0))
	bwd.Add(hooks.AttnQKProbs, scale(2, 0), hooks.InStage(hooks.Bwd), hooks.AtLayers(0))
	g, err := m.Backward(context.Background(), rows, loss, WithHooks(fwd, bwd), GradsAt(&Filter{Points: []hooks.Point{hooks.ResidPostEmb}}))
	if err != nil {
		t.Fatal(err)
	}
	ge := g.Grads[hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}]
	dir := make([]float32, len(ge.Data))
	an := 0.0
	for i := range dir {
		dir[i] = (float32((i*7919)%13) - 6) / 6
		an += float64(ge.Data[i]) * float64(dir[i])
	}
	const e = 1e-4
	num := (lossValue(t, m, rows, loss, dir, e, fwd) - lossValue(t, m, rows, loss, dir, -e, fwd)) / (2 * e)
	if math.Abs(an-num) > 2e-3+2e-2*math.Abs(num) {
		t.Errorf("directional derivative %.6g, finite difference %.6g", an, num)
	}
}
