package modelctx

import (
	"context"
	goruntime "runtime"
	"slices"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// TestForwardViewsMatchesCapture: the views hold exactly what the copying
// capture returns, writing hooks included, and Release empties them.
func TestForwardViewsMatchesCapture(t *testing.T) {
	m := openGolden(t)
	h := hooks.New()
	h.Add(hooks.MLPPostAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		for i := range x.Data {
			x.Data[i] *= 0.5
		}
		return x, nil
	}, hooks.AtLayers(0))
	rows := [][]int{{5, 6, 7, 8}, {9, 10}}
	ctx := context.Background()
	want, err := m.Forward(ctx, rows, WithHooks(h), Capture(AllPoints))
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.ForwardViews(ctx, rows, AllPoints, WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Activations) != len(want.Activations) || len(want.Activations) == 0 {
		t.Fatalf("%d views, %d captured", len(got.Activations), len(want.Activations))
	}
	for s, w := range want.Activations {
		g := got.Activations[s]
		if g == nil || !slices.Equal(g.Shape, w.Shape) || !slices.Equal(g.Data, w.Data) {
			t.Fatalf("%s: view differs from the captured copy", s)
		}
	}
	if !slices.Equal(got.Logits.Data, want.Logits.Data) {
		t.Fatal("logits differ")
	}
	v := got.Activations[hooks.Site{Point: hooks.MLPPostAct, Layer: 1}]
	got.Release()
	got.Release()
	if v.Data != nil {
		t.Fatal("a released view still has data")
	}
	// The memory goes back to ONNX Runtime; the next run still matches.
	again, err := m.ForwardViews(ctx, rows, AllPoints, WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Release()
	for s, w := range want.Activations {
		if !slices.Equal(again.Activations[s].Data, w.Data) {
			t.Fatalf("%s: second run's view differs", s)
		}
	}
}

// TestWarmViewsAllocateNoCopies: once warm, a run that views every point
// allocates in Go far less than the bytes it hands out (no per-run copies),
// where the copying capture allocates at least that much.
func TestWarmViewsAndReleasedCapturesAllocateNoCopies(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{5, 6, 7, 8, 9, 10, 11, 12}}
	ctx := context.Background()
	var handed int
	views := func() {
		v, err := m.ForwardViews(ctx, rows, AllPoints)
		if err != nil {
			t.Fatal(err)
		}
		handed = handedBytes(v.Output)
		v.Release()
	}
	copies := func() {
		if _, err := m.Forward(ctx, rows, Capture(AllPoints)); err != nil {
			t.Fatal(err)
		}
	}
	perRun := func(f func()) uint64 {
		f() // warm: plan, sessions, arena
		const n = 5
		var a, b goruntime.MemStats
		goruntime.ReadMemStats(&a)
		for i := 0; i < n; i++ {
			f()
		}
		goruntime.ReadMemStats(&b)
		return (b.TotalAlloc - a.TotalAlloc) / n
	}
	viewBytes := perRun(views)
	m.DropReleased() // what views gave back would serve the unreleased captures
	copyBytes := perRun(copies)
	t.Logf("per run: views allocate %d B, copies %d B, %d B of activations handed out", viewBytes, copyBytes, handed)
	if handed == 0 {
		t.Fatal("nothing captured")
	}
	if copyBytes < uint64(handed) {
		t.Fatalf("the copying capture allocated %d B for %d B of activations: the measure cannot tell copies", copyBytes, handed)
	}
	if viewBytes > uint64(handed)/10 {
		t.Fatalf("views allocated %d B per warm run for %d B handed out: they copy", viewBytes, handed)
	}

	// A copying capture whose Output is released copies into the memory
	// the last one gave back, logits and activations: once warm it
	// allocates neither.
	var acts int
	released := func() {
		out, err := m.Forward(ctx, rows, Capture(AllPoints))
		if err != nil {
			t.Fatal(err)
		}
		acts = handedBytes(out)
		out.Release()
		if out.Activations != nil || out.Logits != nil {
			t.Fatal("released logits or activations still there")
		}
	}
	releasedBytes := perRun(released)
	t.Logf("per run: a released copying capture allocates %d B for %d B of logits and activations", releasedBytes, acts)
	if copyBytes < releasedBytes || copyBytes-releasedBytes < uint64(acts)*9/10 {
		t.Fatalf("a released capture allocates %d B per warm run, an unreleased one %d B, for %d B of logits and activations: the memory is not reused",
			releasedBytes, copyBytes, acts)
	}
	if releasedBytes > uint64(acts)/10 {
		t.Fatalf("a released capture allocates %d B per warm run for %d B of logits and activations", releasedBytes, acts)
	}
}

// handedBytes is the size of an Output's logits and activations.
func handedBytes(o *Output) int {
	n := 4 * len(o.Logits.Data)
	for _, a := range o.Activations {
		n += 4 * len(a.Data)
	}
	return n
}

// TestWarmCaptureIsWrittenInPlace: a Forward with Capture copies only the
// points whose graph layout is not the reference one (transposed), whose
// tensor an earlier captured point already has, or that are under 4 KiB
// (the runtime gives no Go memory to so small an output); ONNX Runtime
// writes the others, and the logits, into the pooled memory, the first run
// too (the exported graph declares their shapes). ForwardViews copies
// nothing.
func TestWarmCaptureIsWrittenInPlace(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{5, 6, 7, 8, 9, 10, 11, 12}}
	ctx := context.Background()
	out, err := m.Forward(ctx, rows, Capture(AllPoints))
	if err != nil {
		t.Fatal(err)
	}
	// What must be copied: sites seen transposed, and a second site of a
	// tensor (sites are captured in no fixed order: count the tensors).
	var want, all int64
	sites := map[string]int{}
	for s, a := range out.Activations {
		all += 4 * int64(len(a.Data))
		ref := m.points[s]
		transposed := false
		for i, p := range ref.Perm {
			transposed = transposed || p != i
		}
		if transposed || 4*len(a.Data) < 4096 {
			want += 4 * int64(len(a.Data))
		} else if sites[ref.Tensor]++; sites[ref.Tensor] > 1 {
			want += 4 * int64(len(a.Data))
		}
	}
	out.Release()
	for i, f := range []func() error{
		func() error {
			out, err := m.Forward(ctx, rows, Capture(AllPoints))
			out.Release()
			return err
		},
		func() error {
			v, err := m.ForwardViews(ctx, rows, AllPoints)
			v.Release()
			return err
		},
	} {
		before := m.bufs.copied.Load()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		got := m.bufs.copied.Load() - before
		if i == 1 {
			want = 0
		}
		t.Logf("run %d: %d of %d bytes of activations copied", i+1, got, all)
		if got != want {
			t.Fatalf("run %d copied %d bytes of activations, want %d (of %d)", i+1, got, want, all)
		}
	}
}

// TestReadPointsBorrowPooledMemory: a Forward whose observers read every
// point writes the points ONNX Runtime would keep in its arena into the
// Transformer's pool instead (runtime.Request.Free) and gives them back as
// its run goes: once warm it allocates nothing, and a capture after it
// takes that memory rather than allocating its own.
func TestReadPointsBorrowPooledMemory(t *testing.T) {
	m := openGolden(t)
	rows := [][]int{{5, 6, 7, 8, 9, 10, 11, 12}}
	ctx := context.Background()
	h := observeEveryPoint(m)
	for range 2 {
		out, err := m.Forward(ctx, rows, WithHooks(h))
		if err != nil {
			t.Fatal(err)
		}
		out.Release()
	}
	m.bufs.mu.Lock()
	pooled := m.bufs.bytes
	m.bufs.mu.Unlock()
	logits := int64(4 * m.logitsLen(PadRows(rows, 0)))
	if pooled <= logits {
		t.Fatalf("pool holds %d bytes after reading every point, no more than the logits (%d)", pooled, logits)
	}
	before := m.bufs.made.Load()
	out, err := m.Forward(ctx, rows, WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	out.Release()
	if got := m.bufs.made.Load() - before; got != 0 {
		t.Errorf("a warm run reading every point allocated %d bytes", got)
	}
	before = m.bufs.made.Load()
	out, err = m.Forward(ctx, rows, Capture(AllPoints))
	if err != nil {
		t.Fatal(err)
	}
	out.Release()
	if got := m.bufs.made.Load() - before; got != 0 {
		t.Errorf("a capture after reads allocated %d bytes: it did not take the %d bytes the reads left pooled", got, pooled-logits)
	}
}
