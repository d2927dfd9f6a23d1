package modelctx

import (
	"context"
	"encoding/json"
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
	// the tensors made by ops that end no fusion (the attention's
	// Reshapes, Transposes and masking Where) or consumed by nothing (the
	// LayerNorms' recomputed inner points) go out without an Identity's
	// copy: 21 Identities (41 when every consumed read went through one,
	// 27 before the norms were recomputed, 22 before every plan was cut at
	// the head's input, ln_f's output, which now leaves its segment as a
	// cut instead).
	m, err := Open(goldenModel(t))
	if err != nil {
		t.Fatal(err)
	}
	h = observeEveryPoint(m)
	m.Close()
	ops = optimizedOps(t, h)
	if ops["FastGelu"] != 2 || ops["LayerNormalization"] != 5 || ops["Pow"] != 0 || ops["Identity"] != 2*11-1 {
		t.Errorf("with every point read: FastGelu %d (want 2), LayerNormalization %d (want 5), Pow %d (want 0), Identity %d (want %d); all: %v",
			ops["FastGelu"], ops["LayerNormalization"], ops["Pow"], ops["Identity"], 2*11-1, ops)
	}
}

// TestReadCopiesRunEarly checks, in ONNX Runtime's profile, that the
// Identities exposing read tensors their segment also consumes run spread
// among the segment's nodes, not all together: made in reading order, they
// all ran after the segment's last layer, so every read tensor stayed alive
// to the end of the segment, and the memory pattern ONNX Runtime keeps per
// shape held all of them at once. (Nodes ONNX Runtime makes itself are
// ordered first, so the first layer's copies still run together.)
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
		reads, run, longest := 0, 0, 0
		for _, name := range order {
			if strings.HasSuffix(name, "#read") {
				reads++
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
		if reads < 8 {
			continue // the head, or a segment with little read
		}
		checked++
		if longest > 2*reads/3 {
			t.Errorf("%s: %d of its %d read copies run one after another (order: %s)", filepath.Base(f), longest, reads, strings.Join(order, " "))
		}
	}
	if checked == 0 {
		t.Fatalf("no profile with read copies among %d files", len(files))
	}
}
