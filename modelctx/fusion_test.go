package modelctx

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// optimizedOps runs one forward and counts the op types of the graphs ONNX
// Runtime optimised (written by Options.OptimizedDir).
func optimizedOps(t *testing.T, h *hooks.Hooks) map[string]int {
	t.Helper()
	out := t.TempDir()
	m, err := Open(goldenModel(t), WithRuntime(runtime.Options{OptimizedDir: out}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var opts []ForwardOption
	if h != nil {
		opts = append(opts, WithHooks(h))
	}
	if _, err := m.Forward(context.Background(), [][]int{{464, 2068, 7586}}, opts...); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.onnx"))
	if len(files) == 0 {
		t.Fatal("no optimised graph written")
	}
	ops := map[string]int{}
	for _, f := range files {
		mm, err := graphs.ReadModel(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range mm.GetGraph().GetNode() {
			ops[n.GetOpType()]++
		}
	}
	return ops
}

// TestFusionsFireOnStageGraphs checks that ONNX Runtime's graph optimisations
// still fuse the primitive LayerNorm and tanh-GELU of the stage graphs when no
// hook needs their inner tensors, and that the transposes around the
// [B,T,Tk,H] hook layout cancel.
func TestFusionsFireOnStageGraphs(t *testing.T) {
	ops := optimizedOps(t, nil)
	// 2 layers x 2 LayerNorms + the final one; one GELU per layer.
	if ops["LayerNormalization"] != 5 || ops["FastGelu"] != 2 {
		t.Errorf("fused ops: LayerNormalization %d (want 5), FastGelu %d (want 2); all: %v", ops["LayerNormalization"], ops["FastGelu"], ops)
	}
	if ops["Transpose"] > 4*2+1 {
		t.Errorf("%d Transposes left: the [B,T,Tk,H] round trips did not cancel (%v)", ops["Transpose"], ops)
	}
	if ops["Tanh"] != 0 || ops["Sqrt"] != 0 {
		t.Errorf("unfused primitives left: %v", ops)
	}

	// Reading the LayerNorm scale of layer 1 keeps that LayerNorm fused
	// too: the scale is recomputed from the fused kernel's InvStdDev
	// (graphs.FuseReadNorms), one Reciprocal, instead of the norm running
	// as nine primitive ops.
	h := hooks.New()
	h.Observe(hooks.Resid.Torso.LnAttn.Scale, func(*hooks.Context, *hooks.Tensor) error { return nil }, hooks.AtLayers(1))
	ops = optimizedOps(t, h)
	if ops["LayerNormalization"] != 5 || ops["Sqrt"] != 0 || ops["Pow"] != 0 || ops["Reciprocal"] != 1 {
		t.Errorf("with ln_attn.scale@1 read: LayerNormalization %d (want 5), Sqrt %d, Pow %d (want 0), Reciprocal %d (want 1)",
			ops["LayerNormalization"], ops["Sqrt"], ops["Pow"], ops["Reciprocal"])
	}

	// A written inner point needs the primitive ops after it: that norm is
	// not rewritten (its mean runs as a ReduceMean before the cut; ONNX
	// Runtime fuses what follows the cut as a simplified norm), and no
	// inner point is recomputed.
	h = hooks.New()
	h.Add(hooks.Resid.Torso.LnAttn.PostMeanSubtraction, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) { return x, nil }, hooks.AtLayers(1))
	ops = optimizedOps(t, h)
	if ops["ReduceMean"] != 1 || ops["Reciprocal"] != 0 {
		t.Errorf("with ln_attn.post_mean_subtraction@1 written: ReduceMean %d (want 1), Reciprocal %d (want 0); all %v", ops["ReduceMean"], ops["Reciprocal"], ops)
	}

	// Reading the residual stream at every layer (the LayerNorms' inputs)
	// keeps every fusion.
	h = hooks.New()
	for _, p := range []hooks.Point{hooks.Resid.Torso.PostAttn, hooks.Resid.Torso.PostMLP} {
		h.Observe(p, func(*hooks.Context, *hooks.Tensor) error { return nil })
	}
	ops = optimizedOps(t, h)
	if ops["LayerNormalization"] != 5 || ops["FastGelu"] != 2 || ops["Tanh"] != 0 || ops["Sqrt"] != 0 {
		t.Errorf("with the residual read at every layer: LayerNormalization %d (want 5), FastGelu %d (want 2); all: %v", ops["LayerNormalization"], ops["FastGelu"], ops)
	}

	// Reading the LayerNorms' outputs at every layer keeps them fused: a
	// primitive norm's last node (its bias Add) makes the read tensor, so
	// it goes out through an Identity (graphs.Segment.Fetch).
	h = hooks.New()
	for _, p := range []hooks.Point{hooks.PostLnAttn, hooks.PostLnMLP} {
		h.Observe(p, func(*hooks.Context, *hooks.Tensor) error { return nil })
	}
	ops = optimizedOps(t, h)
	if ops["LayerNormalization"] != 5 || ops["Sqrt"] != 0 || ops["Identity"] != 4 {
		t.Errorf("with the LayerNorms' outputs read at every layer: LayerNormalization %d (want 5), Sqrt %d (want 0), Identity %d (want 4); all: %v", ops["LayerNormalization"], ops["Sqrt"], ops["Identity"], ops)
	}

	// Reading the GELU's output at every layer keeps the GELUs fused: ONNX
	// Runtime does not fuse a pattern whose last node makes a graph output,
	// so the read goes out through an Identity (graphs.Segment.Fetch).
	h = hooks.New()
	h.Observe(hooks.MLP.PostAct, func(*hooks.Context, *hooks.Tensor) error { return nil })
	ops = optimizedOps(t, h)
	if ops["FastGelu"] != 2 || ops["LayerNormalization"] != 5 || ops["Tanh"] != 0 {
		t.Errorf("with mlp.post_act read at every layer: FastGelu %d (want 2), LayerNormalization %d (want 5); all: %v", ops["FastGelu"], ops["LayerNormalization"], ops)
	}

	// Reading every point keeps the GELUs and the LayerNorms fused, and
	// only the GELUs' outputs go out through an Identity's copy: the
	// residual and bias Adds, the attention's Reshapes, Transposes and
	// masking Where, the scaling Muls and the fused LayerNorms' outputs
	// end no primitive pattern, and the recomputed inner points are
	// consumed by nothing. 2 Identities (21 when every tensor made by an
	// op that can end any fusion went through one, 41 when every consumed
	// read did).
	m, err := Open(goldenModel(t))
	if err != nil {
		t.Fatal(err)
	}
	h = observeEveryPoint(m)
	m.Close()
	ops = optimizedOps(t, h)
	if ops["FastGelu"] != 2 || ops["LayerNormalization"] != 5 || ops["Pow"] != 0 || ops["Identity"] != 2 {
		t.Errorf("with every point read: FastGelu %d (want 2), LayerNormalization %d (want 5), Pow %d (want 0), Identity %d (want 2); all: %v",
			ops["FastGelu"], ops["LayerNormalization"], ops["Pow"], ops["Identity"], ops)
	}
}

// TestReadCopiesRunEarly checks, in ONNX Runtime's profile, that the
// Identities exposing read tensors their segment also consumes (the GELUs'
// outputs) run before the next layer ends: made in reading order, they all
// ran after the segment's last layer, so every read tensor stayed alive to
// the end of the segment.
func TestReadCopiesRunEarly(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(goldenModel(t), WithRuntime(runtime.Options{ProfileDir: dir}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Forward(context.Background(), [][]int{{464, 2068, 7586}}, WithHooks(observeEveryPoint(m))); err != nil {
		t.Fatal(err)
	}
	m.Close() // writes the profiles
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var events []struct {
			Cat  string `json:"cat"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(b, &events); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// Node names in the order the first run ran them.
		var order []string
		for _, e := range events {
			if name, ok := strings.CutSuffix(e.Name, "_kernel_time"); ok && e.Cat == "Node" && !slices.Contains(order, name) {
				order = append(order, name)
			}
		}
		// The read copies run in the order of their layers, each soon
		// after its tensor is made, rather than the last layer's first.
		var layers []int
		for _, name := range order {
			base, ok := strings.CutSuffix(name, "#read")
			if !ok {
				continue
			}
			var l int
			if _, err := fmt.Sscanf(base[strings.LastIndex(base, ".L")+1:], "L%d", &l); err != nil {
				t.Fatalf("read copy %s: no layer in its name", name)
			}
			layers = append(layers, l)
		}
		if len(layers) < 2 {
			continue // the head, or a segment with little read
		}
		checked++
		if !slices.IsSorted(layers) {
			t.Errorf("%s: read copies run in layer order %v (order: %s)", filepath.Base(f), layers, strings.Join(order, " "))
		}
	}
	if checked == 0 {
		t.Fatalf("no profile with read copies among %d files", len(files))
	}
}

// TestReadDenominatorKeepsSoftmax: a softmax denominator that is only read
// comes from the fused Softmax (the reciprocal of its largest probability),
// so no explicit softmax runs; a written one takes the explicit softmax, so
// that the hook's result changes the probabilities. Both give the same
// denominator and probabilities.
func TestReadDenominatorKeepsSoftmax(t *testing.T) {
	observed := map[string][]float32{}
	observe := func(name string) hooks.Observer {
		return func(c *hooks.Context, x *hooks.Tensor) error {
			observed[fmt.Sprintf("%s@%d", name, c.Layer())] = append([]float32(nil), x.Data...)
			return nil
		}
	}
	h := hooks.New()
	h.Observe(hooks.AttnQKSoftmaxDenominator, observe("read den"))
	h.Observe(hooks.AttnQKProbs, observe("read probs"))
	ops := optimizedOps(t, h)
	if ops["Softmax"] != 2 || ops["Exp"] != 0 || ops["ReduceSum"] != 0 {
		t.Errorf("denominator read: Softmax %d (want 2), Exp %d, ReduceSum %d (want 0); all: %v", ops["Softmax"], ops["Exp"], ops["ReduceSum"], ops)
	}

	w := hooks.New()
	w.Add(hooks.AttnQKSoftmaxDenominator, func(c *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		observed[fmt.Sprintf("written den@%d", c.Layer())] = append([]float32(nil), x.Data...)
		return x, nil
	})
	w.Observe(hooks.AttnQKProbs, observe("written probs"))
	ops = optimizedOps(t, w)
	if ops["Exp"] != 2 || ops["ReduceSum"] != 2 {
		t.Errorf("denominator written: Exp %d, ReduceSum %d (want 2 each, the explicit softmax); all: %v", ops["Exp"], ops["ReduceSum"], ops)
	}

	for l := 0; l < 2; l++ {
		for _, what := range []string{"den", "probs"} {
			r, wr := observed[fmt.Sprintf("read %s@%d", what, l)], observed[fmt.Sprintf("written %s@%d", what, l)]
			if len(r) == 0 || len(r) != len(wr) {
				t.Fatalf("%s@%d: %d values read, %d written", what, l, len(r), len(wr))
			}
			for i := range r {
				if d := math.Abs(float64(r[i] - wr[i])); d > 1e-5*math.Max(1, math.Abs(float64(wr[i]))) {
					t.Fatalf("%s@%d[%d]: %g from the fused softmax, %g from the explicit one", what, l, i, r[i], wr[i])
				}
			}
		}
	}
}
