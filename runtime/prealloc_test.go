package runtime

import (
	"context"
	"slices"
	"testing"
	"unsafe"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// longInput is tinyGraph's input with T rows, so that its tensors pass
// smallValue (outputs that small are never given memory).
func longInput(T int) map[string]*Tensor {
	x := make([]float32, 2*T)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	return map[string]*Tensor{"x": {Shape: []int64{1, int64(T), 2}, F32: x}}
}

// recorder is a Request.Alloc that remembers what it handed out.
type recorder struct{ handed [][]float32 }

func (r *recorder) alloc(n int) []float32 {
	b := make([]float32, n)
	r.handed = append(r.handed, b)
	return b
}

func (r *recorder) gave(data []float32) bool {
	for _, b := range r.handed {
		if sameBacking(b, data) {
			return true
		}
	}
	return false
}

// TestCaptureWritesIntoGivenMemory: once a plan has run with a shape, a
// captured tensor is written by ONNX Runtime into the memory Alloc gives
// (nothing in the runtime copies into it, so right values there show the
// kernel wrote them), and Close leaves it to the caller; a logits-like
// output is written into its Into buffer the same way.
func TestCaptureWritesIntoGivenMemory(t *testing.T) {
	e := tinyEngine(t)
	ctx := context.Background()
	in := longInput(512)
	pre := hooks.Site{Point: hooks.MLPPreAct}
	ref, err := e.RunKeep(ctx, Request{Inputs: in, Outputs: []string{"y"}, Capture: []hooks.Site{pre}})
	if err != nil {
		t.Fatal(err)
	}
	wantH, wantY := ref.Captured[pre].Clone(), ref.Tensors["y"].F32
	ref.Close()

	var r recorder
	run := func() *Result {
		t.Helper()
		res, err := e.RunKeep(ctx, Request{Inputs: in, Outputs: []string{"y"}, Capture: []hooks.Site{pre},
			Alloc: r.alloc, Into: map[string][]float32{"y": make([]float32, len(wantY))}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Captured[pre].Data, wantH.Data) || !slices.Equal(res.Tensors["y"].F32, wantY) {
			t.Fatal("a run writing into given memory computed other values")
		}
		return res
	}
	// Every run, the first too (by the declared shape), writes h into
	// Alloc's memory.
	res := run()
	got := res.Captured[pre]
	if len(r.handed) != 1 || !r.gave(got.Data) {
		t.Fatalf("cold run: Alloc handed %d buffers, captured data in one of them: %v", len(r.handed), r.gave(got.Data))
	}
	res.Close()
	if res.Captured[pre] != got || !slices.Equal(got.Data, wantH.Data) {
		t.Fatal("Close took back a tensor in the caller's memory")
	}
	res = run()
	got = res.Captured[pre]
	if len(r.handed) != 2 || !r.gave(got.Data) {
		t.Fatalf("warm run: Alloc handed %d buffers, captured data in one of them: %v", len(r.handed), r.gave(got.Data))
	}
	res.Close()
	if res.Captured[pre] != got || !slices.Equal(got.Data, wantH.Data) {
		t.Fatal("Close took back a tensor in the caller's memory")
	}
}

// TestIntoIsWrittenInPlace: a run's output value is the Into buffer itself
// (ONNX Runtime wrote it there), not a copy of the arena's: from the first
// run where the graph declares the output's shape, from the second (the
// shape learned) where it does not.
func TestIntoIsWrittenInPlace(t *testing.T) {
	t.Run("declared", func(t *testing.T) { testIntoInPlace(t, tinyGraph(t), 0) })
	t.Run("learned", func(t *testing.T) {
		g := tinyGraph(t)
		g.Model.GetGraph().Output[0].Type = nil // y's shape undeclared
		testIntoInPlace(t, g, 1)
	})
}

func testIntoInPlace(t *testing.T, g *Graph, from int) {
	e, err := NewEngine(g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	in := longInput(512)
	buf := make([]float32, 512*3)
	req := Request{Inputs: in, Outputs: []string{"y"}, Into: map[string][]float32{"y": buf}}
	for i := 0; i < 2; i++ {
		vals, _, release, err := e.forwardValues(ctx, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		inPlace := vals["y"].data == unsafe.Pointer(&buf[0])
		release()
		if inPlace != (i >= from) {
			t.Fatalf("run %d: output written into the Into buffer: %v", i+1, inPlace)
		}
	}
}

// TestWrongRememberedShapeFallsBack: a remembered shape that no longer
// holds makes ONNX Runtime refuse the given memory; the segment runs again
// with ONNX Runtime allocating, and the plan stops giving memory for that
// input signature.
func TestWrongRememberedShapeFallsBack(t *testing.T) {
	e := tinyEngine(t)
	ctx := context.Background()
	in := longInput(512)
	pre := hooks.Site{Point: hooks.MLPPreAct}
	var r recorder
	req := Request{Inputs: in, Outputs: []string{"y"}, Capture: []hooks.Site{pre}, Alloc: r.alloc}
	res, err := e.RunKeep(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := res.Captured[pre].Clone()
	res.Close()
	var p *plan
	for _, slot := range e.plans.slots {
		p = slot.v
	}
	sig := signature(req)
	wrong := map[string][]int64{}
	for name, s := range p.shapes.lookup(sig) {
		wrong[name] = []int64{1, s[1] + 1, s[2]}
	}
	p.shapes.learn(sig, wrong)
	for i := 0; i < 2; i++ {
		res, err := e.RunKeep(ctx, req)
		if err != nil {
			t.Fatalf("run %d with a wrong remembered shape: %v", i+1, err)
		}
		if !slices.Equal(res.Captured[pre].Data, want.Data) {
			t.Fatalf("run %d computed other values", i+1)
		}
		res.Close()
	}
	if len(r.handed) != 2 {
		t.Fatalf("Alloc asked %d times, want twice (the first run, by the declared shape, and the refused one)", len(r.handed))
	}
	if got := p.shapes.lookup(sig); got == nil || len(got) != 0 {
		t.Fatalf("signature after a refused run: %v, want known with nothing to give", got)
	}
}

// TestSegmentsHandingOutReadsRunWithoutMemoryPattern: a segment that
// exposes a read tensor it also consumes through an Identity (the last node
// of a primitive activation, here a SiLU's Mul) is the one kind opened
// without ONNX Runtime's memory pattern on the CPU.
func TestSegmentsHandingOutReadsRunWithoutMemoryPattern(t *testing.T) {
	b := graphs.NewBuilder("silu")
	x := b.Input("x", graphs.Float, "B", "T")
	sig := b.Type(b.Op("Sigmoid", "s", []string{x}), graphs.Float, "B", "T")
	h := b.Type(b.Op("Mul", "h", []string{x, sig}), graphs.Float, "B", "T")
	y := b.Op("Neg", "y", []string{h})
	b.Output(y, graphs.Float, "B", "T")
	for _, c := range []struct {
		name  string
		reads []string
		want  bool
	}{
		{"no reads", nil, false},
		{"a read the segment consumes, ending a SiLU", []string{h}, true},
		{"a read the segment consumes, ending nothing", []string{sig}, false},
		{"a read of the output", []string{y}, false},
	} {
		segs, err := graphs.Split(b.Model(), graphs.Spec{Outputs: []string{y}, Reads: c.reads})
		if err != nil {
			t.Fatal(err)
		}
		if len(segs) != 1 || handsOutReads(segs[0]) != c.want {
			t.Errorf("%s: %d segments, hands out reads: %v, want %v", c.name, len(segs), handsOutReads(segs[0]), c.want)
		}
	}
}

// TestFreeTakesBackReadMemory: with Request.Free, a hooked site's tensor
// that only hooks see is written into Alloc's memory (the observer sees it
// there, cold and warm) and every such buffer goes back through Free by the
// time the run returns; a captured site's and an output's memory do not.
func TestFreeTakesBackReadMemory(t *testing.T) {
	e := tinyEngine(t)
	ctx := context.Background()
	in := longInput(512)
	pre := hooks.Site{Point: hooks.MLPPreAct}
	ref, err := e.Run(ctx, Request{Inputs: in, Outputs: []string{"y"}, Capture: []hooks.Site{pre}})
	if err != nil {
		t.Fatal(err)
	}
	wantY := ref["y"].F32

	for _, capture := range []bool{false, true} {
		var r recorder
		var freed [][]float32
		var seen []float32
		h := hooks.New()
		h.Observe(hooks.MLPPreAct, func(_ *hooks.Context, x *hooks.Tensor) error {
			seen = x.Data
			return nil
		})
		req := Request{Inputs: in, Outputs: []string{"y"}, Hooks: hooks.Snapshot(h), Alloc: r.alloc,
			Free: func(b ...[]float32) { freed = append(freed, b...) }}
		if capture {
			req.Capture = []hooks.Site{pre}
		}
		for run := range 2 {
			r.handed, freed = nil, nil
			res, err := e.RunKeep(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Tensors["y"].F32, wantY) {
				t.Fatal("a run writing reads into given memory computed other values")
			}
			if r.gave(res.Tensors["y"].F32) {
				t.Error("an output was written into memory the run lent itself")
			}
			if len(r.handed) != 1 || !r.gave(seen) {
				t.Fatalf("capture %v, run %d: Alloc handed %d buffers, the observer's tensor in one of them: %v", capture, run, len(r.handed), r.gave(seen))
			}
			if capture {
				if len(freed) != 0 || !r.gave(res.Captured[pre].Data) {
					t.Errorf("run %d: a captured tensor's memory went back through Free (%d buffers)", run, len(freed))
				}
			} else if len(freed) != 1 || !sameBacking(freed[0], r.handed[0]) {
				t.Errorf("run %d: %d buffers went back through Free, want the one handed out", run, len(freed))
			}
			res.Close()
		}
	}
}

// TestObserversSeeOutputsInPlace: an observer of a tensor the run only
// copies out to the caller sees the caller's memory itself (no protective
// copy of a logits-sized tensor); one of a tensor the run keeps as a value
// for later runs gets a copy.
func TestObserversSeeOutputsInPlace(t *testing.T) {
	g := tinyGraph(t)
	g.Points[hooks.Site{Point: hooks.LogitsPoint, Layer: -1}] = PointRef{Tensor: "y"}
	e, err := NewEngine(g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	in := longInput(512)
	var seen []float32
	h := hooks.New()
	h.Observe(hooks.LogitsPoint, func(_ *hooks.Context, x *hooks.Tensor) error {
		seen = x.Data
		return nil
	})
	into := make([]float32, 512*3)
	for range 2 { // the second run writes y into its Into buffer
		res, err := e.RunKeep(context.Background(), Request{Inputs: in, Outputs: []string{"y"}, Hooks: hooks.Snapshot(h),
			Into: map[string][]float32{"y": into}})
		if err != nil {
			t.Fatal(err)
		}
		res.Close()
	}
	if !sameBacking(seen, into) {
		t.Error("the observer of an output copied out got a copy")
	}
	res, err := e.RunKeep(context.Background(), Request{Inputs: in, Outputs: []string{"y"}, Keep: []string{"y"}, Hooks: hooks.Snapshot(h)})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	kept, err := res.Kept["y"].View()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kept.Data, seen) || sameBacking(kept.Data, seen) {
		t.Errorf("the observer of a kept output saw the value itself (%v) or other values", sameBacking(kept.Data, seen))
	}
}
