package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	ort "github.com/yalue/onnxruntime_go"
)

// tinyGraph builds y = (x·W + b) * 2 with W [2,3] in an external weights
// file: x [B,T,2] -> h = x·W + b ("mlp.pre_act.L0", [B,T,3]) -> y ("logits").
func tinyGraph(t *testing.T) *Graph {
	t.Helper()
	dir := t.TempDir()
	w := []float32{1, 2, 3, 4, 5, 6}
	buf := make([]byte, 4096+len(w)*4)
	for i, v := range w {
		binary.LittleEndian.PutUint32(buf[4096+4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	b := graphs.NewBuilder("tiny")
	x := b.Input("x", graphs.Float, "B", "T", "2")
	W := b.External("W", []int64{2, 3}, "w.bin", 4096, int64(len(w)*4))
	bias := b.ConstF32("bias", []int64{3}, 10, 20, 30)
	h := b.Type(b.Op("Add", "h", []string{b.Op("MatMul", "", []string{x, W}), bias}), graphs.Float, "B", "T", "3")
	two := b.ConstF32("two", nil, 2)
	y := b.Op("Mul", "y", []string{h, two})
	b.Output(y, graphs.Float, "B", "T", "3")
	return &Graph{
		Model: b.Model(),
		Dir:   dir,
		Points: map[hooks.Site]PointRef{
			{Point: hooks.MLPPreAct, Layer: 0}: {Tensor: h},
			// The same tensor seen transposed, to check layout permutations.
			{Point: hooks.AttnQKLogits, Layer: 0}: {Tensor: y, Perm: []int{0, 2, 1}},
		},
		NLayers: 1,
	}
}

// tinyInput is an input of tinyGraph: rows (1,0) and (0,1).
func tinyInput() map[string]*Tensor {
	return map[string]*Tensor{"x": {Shape: []int64{1, 2, 2}, F32: []float32{1, 0, 0, 1}}}
}

// tinyEngine is an engine over tinyGraph, closed when the test ends.
func tinyEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := NewEngine(tinyGraph(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestEngineCutsAndHooks(t *testing.T) {
	e := tinyEngine(t)
	in := tinyInput()
	ctx := context.Background()
	out, err := e.Run(ctx, Request{Inputs: in, Outputs: []string{"y"}})
	if err != nil {
		t.Fatal(err)
	}
	// x rows (1,0) and (0,1): h = W rows + bias = (11,22,33), (14,25,36); y = 2h.
	want := []float32{22, 44, 66, 28, 50, 72}
	for i, v := range out["y"].F32 {
		if v != want[i] {
			t.Fatalf("y = %v, want %v", out["y"].F32, want)
		}
	}
	// A writer at h: the continuation uses what it returns.
	h := hooks.New()
	h.Add(hooks.MLPPreAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		if x.Shape[2] != 3 || x.Data[0] != 11 {
			t.Errorf("hook sees %v %v", x.Shape, x.Data)
		}
		return hooks.Zeros(x.Shape...), nil
	})
	var seen *hooks.Tensor
	h.Observe(hooks.AttnQKLogits, func(_ *hooks.Context, x *hooks.Tensor) error {
		seen = x.Clone()
		return nil
	})
	out, err = e.Run(ctx, Request{Inputs: in, Outputs: []string{"y"}, Hooks: hooks.Snapshot(h)})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range out["y"].F32 {
		if v != 0 {
			t.Fatalf("y after zeroing h: %v", out["y"].F32)
		}
	}
	if seen == nil || len(seen.Shape) != 3 || seen.Shape[1] != 3 || seen.Shape[2] != 2 {
		t.Fatalf("permuted observer saw %v", seen)
	}
	// A point the graph does not carry.
	h2 := hooks.New()
	h2.Observe(hooks.AttnV, func(*hooks.Context, *hooks.Tensor) error { return nil })
	if _, err := e.Run(ctx, Request{Inputs: in, Outputs: []string{"y"}, Hooks: hooks.Snapshot(h2)}); !errors.Is(err, ErrNoPoint) {
		t.Fatalf("missing point: %v", err)
	}
	// A writer through a permutation: doubling the transposed view doubles y.
	h3 := hooks.New()
	h3.Add(hooks.AttnQKLogits, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		for i := range x.Data {
			x.Data[i] *= 2
		}
		return x, nil
	})
	out, err = e.Run(ctx, Request{Inputs: in, Outputs: []string{"y"}, Hooks: hooks.Snapshot(h3)})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out["y"].F32 {
		if v != 2*want[i] {
			t.Fatalf("y through a permuted writer = %v, want 2x %v", out["y"].F32, want)
		}
	}
}

func TestEngineCancelled(t *testing.T) {
	e := tinyEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Run(ctx, Request{Inputs: map[string]*Tensor{"x": {Shape: []int64{1, 1, 2}, F32: []float32{1, 1}}}, Outputs: []string{"y"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestEngineBadInputs(t *testing.T) {
	e := tinyEngine(t)
	ctx := context.Background()
	if _, err := e.Run(ctx, Request{Inputs: map[string]*Tensor{}, Outputs: []string{"y"}}); err == nil {
		t.Error("missing input accepted")
	}
	if _, err := e.Run(ctx, Request{Inputs: map[string]*Tensor{"x": {Shape: []int64{1, 1, 2}, F32: []float32{1}}}, Outputs: []string{"y"}}); !errors.Is(err, ErrInput) {
		t.Errorf("short data: %v", err)
	}
	if _, err := e.Run(ctx, Request{Inputs: map[string]*Tensor{"x": {Shape: []int64{1, 1, 5}, F32: make([]float32, 5)}}, Outputs: []string{"y"}}); err == nil {
		t.Error("wrong inner dimension accepted")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(ctx, Request{Inputs: map[string]*Tensor{"x": {Shape: []int64{1, 1, 2}, F32: []float32{1, 1}}}, Outputs: []string{"y"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("run after close: %v", err)
	}
}

func TestMissingWeightsFile(t *testing.T) {
	g := tinyGraph(t)
	os.Remove(filepath.Join(g.Dir, "w.bin"))
	if _, err := NewEngine(g, Options{}); err == nil {
		t.Fatal("engine over a missing weights file")
	}
}

// TestSessionOptionsLayout guards the one assumption the shim makes about
// onnxruntime_go: SessionOptions' first field is the C pointer.
func TestSessionOptionsLayout(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer so.Destroy()
	if sessionOptionsPtr(so) == nil {
		t.Fatal("nil OrtSessionOptions")
	}
	if err := disablePerSessionThreads(so); err != nil {
		t.Fatal(err)
	}
	if err := so.AddSessionConfigEntry("session.use_env_allocators", "1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := so.HasSessionConfigEntry("session.use_env_allocators"); err != nil || !ok {
		t.Fatalf("config entry lost: %v %v", ok, err)
	}
}

// plusOneGraph is z = x + 1 over x [B,T,3], with resid.post_emb at x itself
// (a hook point on a model input).
func plusOneGraph() *Graph {
	b := graphs.NewBuilder("plus1")
	x := b.Input("x", graphs.Float, "B", "T", "3")
	z := b.Op("Add", "z", []string{x, b.ConstF32("one", nil, 1)})
	b.Output(z, graphs.Float, "B", "T", "3")
	return &Graph{Model: b.Model(), Points: map[hooks.Site]PointRef{{Point: hooks.ResidPostEmb, Layer: -1}: {Tensor: x}}, NLayers: 1}
}

func TestEngineKeptValues(t *testing.T) {
	ctx := context.Background()
	e := tinyEngine(t)
	in := tinyInput()
	want := []float32{22, 44, 66, 28, 50, 72}

	// A kept output is the same tensor Run would copy out.
	res, err := e.RunKeep(ctx, Request{Inputs: in, Outputs: []string{"y"}, Keep: []string{"y"}})
	if err != nil {
		t.Fatal(err)
	}
	y := res.Kept["y"]
	if y == nil || len(res.Tensors) != 0 || fmt.Sprint(y.Shape()) != "[1 2 3]" || y.OnDevice() {
		t.Fatalf("kept %v (shape %v), copied %v", y, y.Shape(), res.Tensors)
	}
	got, err := y.Tensor()
	if err != nil || !slices.Equal(got.F32, want) {
		t.Fatalf("kept y = %v, %v; want %v", got, err, want)
	}
	// On the CPU, keeping an output or copying it comes out of one plan.
	if _, err := e.Run(ctx, Request{Inputs: in, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	if n := e.PlanCount(); n != 1 {
		t.Fatalf("%d plans for one set of outputs", n)
	}

	// Fed to another model without a copy; a writing hook at that input
	// edits its own copy, never the caller's value.
	e2, err := NewEngine(plusOneGraph(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	h := hooks.New()
	h.Add(hooks.ResidPostEmb, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		for i := range x.Data {
			x.Data[i] += 100
		}
		return x, nil
	})
	for _, hs := range []*hooks.Set{nil, hooks.Snapshot(h)} {
		out, err := e2.Run(ctx, Request{Values: map[string]*Value{"x": y}, Outputs: []string{"z"}, Hooks: hs})
		if err != nil {
			t.Fatal(err)
		}
		add := float32(1)
		if hs != nil {
			add = 101
		}
		for i, v := range out["z"].F32 {
			if v != want[i]+add {
				t.Fatalf("z = %v, want y+%v", out["z"].F32, add)
			}
		}
		if again, _ := y.Tensor(); !slices.Equal(again.F32, want) {
			t.Fatalf("the run changed the caller's value: %v", again.F32)
		}
	}
	y.Close()
	y.Close() // harmless
	if _, err := y.Tensor(); err == nil {
		t.Fatal("a closed value gave a tensor")
	}
	if _, err := e2.Run(ctx, Request{Values: map[string]*Value{"x": y}, Outputs: []string{"z"}}); !errors.Is(err, ErrInput) {
		t.Fatalf("closed value fed: %v", err)
	}

	// Misuse is an ErrInput.
	res2, err := e.RunKeep(ctx, Request{Inputs: in, Outputs: []string{"y"}, Keep: []string{"y"}})
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Close()
	for name, req := range map[string]Request{
		"keep outside outputs": {Inputs: in, Outputs: []string{"y"}, Keep: []string{"h"}},
		"tensor and value":     {Inputs: in, Values: map[string]*Value{"x": res2.Kept["y"]}, Outputs: []string{"y"}},
	} {
		if _, err := e.RunKeep(ctx, req); !errors.Is(err, ErrInput) {
			t.Errorf("%s: got %v, want ErrInput", name, err)
		}
	}
	if _, err := e.Run(ctx, Request{Inputs: in, Outputs: []string{"y"}, Keep: []string{"y"}}); !errors.Is(err, ErrInput) {
		t.Errorf("Run with Keep: got %v, want ErrInput", err)
	}
}

// Request.Into: an output copied into Go lands in the caller's buffer where
// the sizes match, and in a new one where they do not.
func TestRunCopiesIntoGivenBuffers(t *testing.T) {
	e := tinyEngine(t)
	in := tinyInput()
	ctx := context.Background()
	want, err := e.Run(ctx, Request{Inputs: in, Outputs: []string{"y"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		buf  []float32
		into bool
	}{
		{"same size", make([]float32, 6), true},
		{"too small", make([]float32, 5), false},
		{"too big", make([]float32, 7), false},
	} {
		out, err := e.Run(ctx, Request{Inputs: in, Outputs: []string{"y"}, Into: map[string][]float32{"y": c.buf}})
		if err != nil {
			t.Fatal(err)
		}
		got := out["y"].F32
		if !slices.Equal(got, want["y"].F32) {
			t.Fatalf("%s: y = %v, want %v", c.name, got, want["y"].F32)
		}
		if (&got[0] == &c.buf[0]) != c.into {
			t.Fatalf("%s: copied into the given buffer: %v, want %v", c.name, !c.into, c.into)
		}
	}
}
