package modelctx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func TestGoldenStopAtLayer(t *testing.T) {
	w := golden.LoadWorkflows(t)
	m := openGolden(t)
	rows := [][]int{w.Partial.Tokens}
	for _, c := range w.Partial.StopAtLayer {
		out, err := m.Forward(context.Background(), rows, StopAtLayer(c.Layer))
		if err != nil {
			t.Fatal(err)
		}
		if out.Logits != nil || out.Resid == nil {
			t.Fatalf("stop at %d: logits %v, resid %v", c.Layer, out.Logits != nil, out.Resid != nil)
		}
		if fmt.Sprint(out.Resid.Shape) != fmt.Sprint(c.Shape) {
			t.Fatalf("stop at %d: shape %v, want %v", c.Layer, out.Resid.Shape, c.Shape)
		}
		w.Check(t, fmt.Sprintf("stop at layer %d", c.Layer), out.Resid.Data, c.Tensor)
	}
}

func TestGoldenStartAtLayer(t *testing.T) {
	w := golden.LoadWorkflows(t)
	m := openGolden(t)
	rows := [][]int{w.Partial.Tokens}
	for _, c := range w.Partial.StartRuns {
		t.Run(c.Name, func(t *testing.T) {
			in := w.Partial.StartResid
			if strings.Contains(c.Input, "start_resid_last") {
				in = w.Partial.StartResidLast
			}
			resid := &hooks.Tensor{Shape: in.Shape, Data: w.Read(t, in)}
			opts := []ForwardOption{StartAtLayer(c.StartLayer, resid)}
			if strings.Contains(c.Name, "with_hook") {
				h := hooks.New()
				h.Add(hooks.MLPPostAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
					return x, x.FillTrailing(0, 7)
				}, hooks.AtLayers(1))
				opts = append(opts, WithHooks(h))
			}
			out, err := m.Forward(context.Background(), rows, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if c.Logits != nil {
				w.Check(t, "logits", out.Logits.Data, *c.Logits)
			}
			if c.LogitsLast != nil {
				T := len(rows[0])
				w.Check(t, "logits_last", lastLogits(out.Logits, []int{T - 1}), *c.LogitsLast)
			}
		})
	}
}

// A stop at layer l and a start there from its residual give the full
// pass's logits: bit for bit with no hooks; with hooks that cut the graph
// elsewhere, ONNX Runtime may fuse across the uncut boundary in the full
// pass (the add and the LayerNorm after it), so there they agree to
// float32 round-off.
func TestPartialRunsComposeToFullPass(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{3260, 5335, 290, 1757, 1364}, {11, 1757, 2921}}
	scale := func(layer int) *hooks.Hooks {
		h := hooks.New()
		h.Add(hooks.MLPPostAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
			for i := range x.Data {
				x.Data[i] *= 1.5
			}
			return x, nil
		}, hooks.AtLayers(layer))
		return h
	}
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		hooks []*hooks.Hooks
		tol   float32
	}{
		{"no hooks", nil, 0},
		{"hooks on both sides", []*hooks.Hooks{scale(0), scale(1)}, 1e-5},
	} {
		full, err := m.Forward(ctx, rows, WithHooks(c.hooks...))
		if err != nil {
			t.Fatal(err)
		}
		for l := 0; l <= m.NLayers(); l++ {
			head, err := m.Forward(ctx, rows, StopAtLayer(l), WithHooks(c.hooks...))
			if err != nil {
				t.Fatal(err)
			}
			tail, err := m.Forward(ctx, rows, StartAtLayer(l, head.Resid), WithHooks(c.hooks...))
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range full.Logits.Data {
				if d := tail.Logits.Data[i] - want; d > c.tol || d < -c.tol {
					t.Fatalf("%s, split at layer %d: logit %d is %v, the full pass gives %v", c.name, l, i, tail.Logits.Data[i], want)
				}
			}
		}
	}
}

// A partial run holds only the layers it runs: hooks before the start and
// after the stop are not called.
func TestPartialRunsCallOnlyTheirHooks(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{3260, 5335, 290}}
	ctx := context.Background()
	var seen []string
	h := hooks.New()
	for _, p := range []hooks.Point{hooks.ResidPostEmb, hooks.MLPPostAct, hooks.PostLnF} {
		h.Observe(p, func(c *hooks.Context, _ *hooks.Tensor) error {
			seen = append(seen, c.Site.String())
			return nil
		})
	}
	mid, err := m.Forward(ctx, rows, StopAtLayer(1), WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, " "); got != "resid.post_emb mlp.post_act@0" {
		t.Errorf("stop at 1 called %q", got)
	}
	seen = nil
	if _, err := m.Forward(ctx, rows, StartAtLayer(1, mid.Resid), WithHooks(h)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, " "); got != "mlp.post_act@1 resid.post_ln_f" {
		t.Errorf("start at 1 called %q", got)
	}
}

func TestPartialRunsBadInput(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{3260, 5335, 290}}
	ctx := context.Background()
	good := hooks.Zeros(1, 3, 64)
	for _, c := range []struct {
		name string
		opts []ForwardOption
	}{
		{"stop layer out of range", []ForwardOption{StopAtLayer(3)}},
		{"start layer out of range", []ForwardOption{StartAtLayer(-2, good)}},
		{"start residual of another shape", []ForwardOption{StartAtLayer(1, hooks.Zeros(1, 4, 64))}},
		{"no start residual", []ForwardOption{StartAtLayer(1, nil)}},
		{"stop before start", []ForwardOption{StartAtLayer(1, good), StopAtLayer(1)}},
	} {
		_, err := m.Forward(ctx, rows, c.opts...)
		if !errors.Is(err, ErrPartial) {
			t.Errorf("%s: error %v, want ErrPartial", c.name, err)
		}
	}
}
