package modelctx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

func piece(t *testing.T, key string) []float32 {
	t.Helper()
	ck, err := gpt2.OpenCheckpoint(golden.ModelDir())
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := ck.Tensor(key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func set(v float32) hooks.Func {
	return func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		for i := range x.Data {
			x.Data[i] = v
		}
		return x, nil
	}
}

func addConst(v float32) hooks.Func {
	return func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		out := x.Clone() // a new tensor, not an in-place edit
		for i := range out.Data {
			out.Data[i] += v
		}
		return out, nil
	}
}

func scale(v float32) hooks.Func {
	return func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		for i := range x.Data {
			x.Data[i] *= v
		}
		return x, nil
	}
}

// rowsEqual checks that every row over the last axis equals want (a vector
// broadcast to every position), within tol.
func rowsEqual(t *testing.T, name string, got *hooks.Tensor, want []float32, tol float64) {
	t.Helper()
	n := len(want)
	if len(got.Data)%n != 0 {
		t.Fatalf("%s: %d values are not rows of %d", name, len(got.Data), n)
	}
	for i, v := range got.Data {
		if d := math.Abs(float64(v - want[i%n])); d > tol || math.IsNaN(float64(v)) {
			t.Fatalf("%s[%d] = %v, want %v", name, i, v, want[i%n])
		}
	}
}

func allClose(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if math.IsInf(w, -1) && math.IsInf(g, -1) {
			continue
		}
		if d := math.Abs(g - w); d > tol || math.IsNaN(g) {
			t.Fatalf("%s[%d] = %v, want %v", name, i, g, w)
		}
	}
}

// TestWritingEveryPoint writes at each of the 27 hook points and checks an
// exact effect downstream.
func TestWritingEveryPoint(t *testing.T) {
	m := openGolden(t)
	in := golden.Load(t).Input("batch_right")
	ctx := context.Background()
	plain, err := m.Forward(ctx, in.Rows, Capture(AllPoints))
	if err != nil {
		t.Fatal(err)
	}
	act := func(o *Output, p hooks.Point, l int) *hooks.Tensor {
		x, ok := o.Activations[hooks.Site{Point: p, Layer: l}]
		if !ok {
			t.Fatalf("%s@%d not captured", p, l)
		}
		return x
	}
	const tol = 2e-5
	sqrtEps := float32(math.Sqrt(1e-5))
	type check func(t *testing.T, o *Output)
	cases := []struct {
		at    hooks.Site
		fn    hooks.Func
		check check
	}{
		{hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "post_ln_attn.L0", act(o, hooks.PostLnAttn, 0), piece(t, "xf_layers.0.ln_1.bias"), tol)
		}},
		{hooks.Site{Point: hooks.LnAttnPostMeanSubtraction, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "ln_attn.scale.L0", act(o, hooks.LnAttnScale, 0), []float32{sqrtEps}, 1e-7)
			rowsEqual(t, "post_ln_attn.L0", act(o, hooks.PostLnAttn, 0), piece(t, "xf_layers.0.ln_1.bias"), tol)
		}},
		{hooks.Site{Point: hooks.LnAttnScale, Layer: 1}, set(1), func(t *testing.T, o *Output) {
			allClose(t, "post_scale = post_mean_subtraction", act(o, hooks.LnAttnPostScale, 1).Data, act(o, hooks.LnAttnPostMeanSubtraction, 1).Data, 0)
		}},
		{hooks.Site{Point: hooks.LnAttnPostScale, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "post_ln_attn.L0", act(o, hooks.PostLnAttn, 0), piece(t, "xf_layers.0.ln_1.bias"), tol)
		}},
		{hooks.Site{Point: hooks.PostLnAttn, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			bq, bv := piece(t, "xf_layers.0.attn.q_proj.bias"), piece(t, "xf_layers.0.attn.v_proj.bias")
			for i := range bq {
				bq[i] *= 0.5 // d_head^-1/4 with d_head 16
			}
			rowsEqual(t, "attn.q.L0", act(o, hooks.AttnQ, 0), bq, tol)
			rowsEqual(t, "attn.v.L0", act(o, hooks.AttnV, 0), bv, tol)
		}},
		{hooks.Site{Point: hooks.AttnQ, Layer: 0}, set(0), func(t *testing.T, o *Output) { uniformProbs(t, act(o, hooks.AttnQKProbs, 0), in.Pad) }},
		{hooks.Site{Point: hooks.AttnK, Layer: 1}, set(0), func(t *testing.T, o *Output) { uniformProbs(t, act(o, hooks.AttnQKProbs, 1), in.Pad) }},
		{hooks.Site{Point: hooks.AttnV, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "delta_attn.L0", act(o, hooks.DeltaAttn, 0), piece(t, "xf_layers.0.attn.out_proj.bias"), tol)
		}},
		{hooks.Site{Point: hooks.AttnQKLogits, Layer: 0}, addConst(5), func(t *testing.T, o *Output) {
			allClose(t, "qk_probs.L0", act(o, hooks.AttnQKProbs, 0).Data, act(plain, hooks.AttnQKProbs, 0).Data, 1e-6)
			allClose(t, "logits", o.Logits.Data, plain.Logits.Data, 1e-4)
		}},
		{hooks.Site{Point: hooks.AttnQKSoftmaxDenominator, Layer: 1}, scale(2), func(t *testing.T, o *Output) {
			half := act(plain, hooks.AttnQKProbs, 1).Clone()
			for i := range half.Data {
				half.Data[i] /= 2
			}
			allClose(t, "qk_probs.L1", act(o, hooks.AttnQKProbs, 1).Data, half.Data, 1e-6)
		}},
		{hooks.Site{Point: hooks.AttnQKProbs, Layer: 1}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "delta_attn.L1", act(o, hooks.DeltaAttn, 1), piece(t, "xf_layers.1.attn.out_proj.bias"), tol)
		}},
		{hooks.Site{Point: hooks.AttnVOut, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "delta_attn.L0", act(o, hooks.DeltaAttn, 0), piece(t, "xf_layers.0.attn.out_proj.bias"), tol)
		}},
		{hooks.Site{Point: hooks.DeltaAttn, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			allClose(t, "post_attn.L0 = post_emb", act(o, hooks.PostAttn, 0).Data, act(o, hooks.ResidPostEmb, -1).Data, 0)
		}},
		{hooks.Site{Point: hooks.PostAttn, Layer: 1}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "post_ln_mlp.L1", act(o, hooks.PostLnMLP, 1), piece(t, "xf_layers.1.ln_2.bias"), tol)
		}},
		{hooks.Site{Point: hooks.LnMLPPostMeanSubtraction, Layer: 1}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "ln_mlp.scale.L1", act(o, hooks.LnMLPScale, 1), []float32{sqrtEps}, 1e-7)
		}},
		{hooks.Site{Point: hooks.LnMLPScale, Layer: 0}, set(1), func(t *testing.T, o *Output) {
			allClose(t, "post_scale = post_mean_subtraction", act(o, hooks.LnMLPPostScale, 0).Data, act(o, hooks.LnMLPPostMeanSubtraction, 0).Data, 0)
		}},
		{hooks.Site{Point: hooks.LnMLPPostScale, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "post_ln_mlp.L0", act(o, hooks.PostLnMLP, 0), piece(t, "xf_layers.0.ln_2.bias"), tol)
		}},
		{hooks.Site{Point: hooks.PostLnMLP, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "mlp.pre_act.L0", act(o, hooks.MLPPreAct, 0), piece(t, "xf_layers.0.mlp.in_layer.bias"), tol)
		}},
		{hooks.Site{Point: hooks.MLPPreAct, Layer: 1}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "mlp.post_act.L1", act(o, hooks.MLPPostAct, 1), []float32{0}, 0)
		}},
		{hooks.Site{Point: hooks.MLPPostAct, Layer: 1}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "delta_mlp.L1", act(o, hooks.DeltaMLP, 1), piece(t, "xf_layers.1.mlp.out_layer.bias"), tol)
		}},
		{hooks.Site{Point: hooks.DeltaMLP, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			allClose(t, "post_mlp.L0 = post_attn.L0", act(o, hooks.PostMLP, 0).Data, act(o, hooks.PostAttn, 0).Data, 0)
		}},
		{hooks.Site{Point: hooks.PostMLP, Layer: 0}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "post_ln_attn.L1", act(o, hooks.PostLnAttn, 1), piece(t, "xf_layers.1.ln_1.bias"), tol)
		}},
		{hooks.Site{Point: hooks.LnFPostMeanSubtraction, Layer: -1}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "post_ln_f", act(o, hooks.PostLnF, -1), piece(t, "final_ln.bias"), tol)
		}},
		{hooks.Site{Point: hooks.LnFScale, Layer: -1}, set(1), func(t *testing.T, o *Output) {
			allClose(t, "ln_f post_scale = post_mean_subtraction", act(o, hooks.LnFPostScale, -1).Data, act(o, hooks.LnFPostMeanSubtraction, -1).Data, 0)
		}},
		{hooks.Site{Point: hooks.LnFPostScale, Layer: -1}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "post_ln_f", act(o, hooks.PostLnF, -1), piece(t, "final_ln.bias"), tol)
		}},
		{hooks.Site{Point: hooks.PostLnF, Layer: -1}, set(0), func(t *testing.T, o *Output) {
			rowsEqual(t, "logits", o.Logits, []float32{0}, 0)
		}},
		{hooks.Site{Point: hooks.LogitsPoint, Layer: -1}, addConst(1), func(t *testing.T, o *Output) {
			want := append([]float32(nil), plain.Logits.Data...)
			for i := range want {
				want[i]++
			}
			allClose(t, "logits", o.Logits.Data, want, 1e-5)
		}},
	}
	seen := map[hooks.Point]bool{}
	for _, tc := range cases {
		seen[tc.at.Point] = true
		t.Run(tc.at.String(), func(t *testing.T) {
			h := hooks.New()
			var opts []hooks.Option
			if tc.at.Layer >= 0 {
				opts = append(opts, hooks.AtLayers(tc.at.Layer))
			}
			h.Add(tc.at.Point, tc.fn, opts...)
			o, err := m.Forward(ctx, in.Rows, WithHooks(h), Capture(AllPoints))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
	if len(seen) != 27 {
		t.Errorf("covered %d points, want 27", len(seen))
	}
}

// uniformProbs checks that each query's probabilities are uniform over the
// keys it may attend to (zero q or k makes every logit 0).
func uniformProbs(t *testing.T, p *hooks.Tensor, pad [][]bool) {
	t.Helper()
	B, T, Tk, H := p.Shape[0], p.Shape[1], p.Shape[2], p.Shape[3]
	for b := 0; b < B; b++ {
		for q := 0; q < T; q++ {
			allowed := 0
			for k := 0; k <= q; k++ {
				if pad[b][q] == pad[b][k] {
					allowed++
				}
			}
			for k := 0; k < Tk; k++ {
				want := float32(0)
				if k <= q && pad[b][q] == pad[b][k] {
					want = 1 / float32(allowed)
				}
				for h := 0; h < H; h++ {
					if got := p.At(b, q, k, h); math.Abs(float64(got-want)) > 1e-6 {
						t.Fatalf("probs[%d,%d,%d,%d] = %v, want %v", b, q, k, h, got, want)
					}
				}
			}
		}
	}
}

func TestGoldenInterventions(t *testing.T) {
	c := golden.Load(t)
	m := openGolden(t)
	in := c.Input("batch_right")
	patch := golden.Read(t, c.PatchVector)
	edits := map[string]hooks.Edit{
		"ablate_mlp_neuron":      {Site: hooks.Site{Point: hooks.MLPPostAct, Layer: 1}, Index: []int{7}, Kind: hooks.Ablate},
		"ablate_attn_head_v_out": {Site: hooks.Site{Point: hooks.AttnVOut, Layer: 0}, Index: []int{2}, Kind: hooks.Ablate},
		"patch_delta_attn":       {Site: hooks.Site{Point: hooks.DeltaAttn, Layer: 0}, Kind: hooks.Add, Vec: patch},
	}
	done := 0
	for _, iv := range in.Interventions {
		e, ok := edits[iv.Name]
		if !ok {
			continue
		}
		t.Run(iv.Name, func(t *testing.T) {
			h := hooks.New()
			e.Register(h)
			out, err := m.Forward(context.Background(), in.Rows, WithHooks(h))
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, iv.Name, lastLogits(out.Logits, in.LastRealPosition), iv.LogitsLast)
		})
		done++
	}
	if done != len(edits) {
		t.Fatalf("ran %d of %d interventions", done, len(edits))
	}
}

func TestPlansAreCached(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	rows := [][]int{{1, 2, 3}}
	run := func() {
		h := hooks.New()
		h.Add(hooks.MLPPostAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) { return x, nil }, hooks.AtLayers(1))
		if _, err := m.Forward(ctx, rows, WithHooks(h)); err != nil {
			t.Fatal(err)
		}
	}
	run()
	before, plans := runtime.SessionsCreated(), m.Engine().PlanCount()
	run()
	if after := runtime.SessionsCreated(); after != before {
		t.Fatalf("second run with the same hooked sites created %d sessions", after-before)
	}
	if m.Engine().PlanCount() != plans {
		t.Fatal("second run built a new plan")
	}
}

func TestHookFailureLeavesModelUsable(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	rows := [][]int{{464, 2068}}
	for name, fn := range map[string]hooks.Func{
		"error": func(*hooks.Context, *hooks.Tensor) (*hooks.Tensor, error) { return nil, errors.New("no") },
		"panic": func(*hooks.Context, *hooks.Tensor) (*hooks.Tensor, error) { panic("no") },
		"shape": func(*hooks.Context, *hooks.Tensor) (*hooks.Tensor, error) { return hooks.Zeros(1, 1, 1), nil },
	} {
		h := hooks.New()
		h.Add(hooks.AttnQKLogits, fn, hooks.AtLayers(1))
		_, err := m.Forward(ctx, rows, WithHooks(h))
		if err == nil || !strings.Contains(err.Error(), "attn.qk_logits layer 1") {
			t.Errorf("%s: error %v does not name the point and layer", name, err)
		}
		if _, err := m.Forward(ctx, rows, WithHooks(h)); err == nil {
			t.Errorf("%s: second run passed", name)
		}
		if _, err := m.Forward(ctx, rows); err != nil {
			t.Errorf("%s: plain run after a failed hook: %v", name, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	long := make([]int, 65)
	for _, tc := range []struct {
		name string
		rows [][]int
		want error
	}{
		{"empty batch", nil, ErrEmptyBatch},
		{"empty row", [][]int{{1}, {}}, ErrEmptyBatch},
		{"negative id", [][]int{{1, -1}}, ErrTokenOutOfRange},
		{"id >= n_vocab", [][]int{{50257}}, ErrTokenOutOfRange},
		{"longer than n_ctx", [][]int{long}, ErrTooLong},
	} {
		if _, err := m.Forward(ctx, tc.rows); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := m.Forward(ctx, [][]int{{1}}, Capture(&Filter{Layers: []int{5}})); err == nil {
		t.Error("layer out of range accepted")
	}
}

// TestOutLayerAtPostAct: a hook at mlp.post_act gets the layer's MLP output
// projection (the original's out_layer kwarg), which maps the point onto
// resid.torso.delta_mlp; no other point has one.
func TestOutLayerAtPostAct(t *testing.T) {
	m := openGolden(t)
	in := golden.Load(t).Input("prompt")
	got := map[int]*hooks.Tensor{}
	h := hooks.New()
	h.Observe(hooks.MLPPostAct, func(hc *hooks.Context, x *hooks.Tensor) error {
		v, ok := hc.Value(OutLayerKey)
		if !ok {
			return errors.New("no out_layer at mlp.post_act")
		}
		y, err := v.(*OutLayer).Apply(x)
		got[hc.Layer()] = y
		return err
	})
	h.Observe(hooks.MLPPreAct, func(hc *hooks.Context, x *hooks.Tensor) error {
		if _, ok := hc.Value(OutLayerKey); ok {
			return errors.New("out_layer at mlp.pre_act")
		}
		return nil
	})
	out, err := m.Forward(context.Background(), in.Rows, WithHooks(h), Capture(&Filter{Points: []hooks.Point{hooks.DeltaMLP}}))
	if err != nil {
		t.Fatal(err)
	}
	for l := 0; l < m.NLayers(); l++ {
		want := out.Activations[hooks.Site{Point: hooks.DeltaMLP, Layer: l}]
		if got[l] == nil || want == nil {
			t.Fatalf("layer %d: out layer applied %v, delta_mlp %v", l, got[l] != nil, want != nil)
		}
		allClose(t, fmt.Sprintf("out_layer(post_act)@%d", l), got[l].Data, want.Data, 1e-4)
	}
}
