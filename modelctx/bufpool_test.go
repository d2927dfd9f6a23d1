package modelctx

import (
	"context"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// fakeClock is a bufPool's clock that a test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestBufPoolAgesOutUnusedBuffers(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	p := bufPool{now: clock.now}
	big := make([]float32, 1000)
	p.put(big)
	run := func() { // a run of another shape: takes its buffer, gives it back
		b := p.take(10)
		if b == nil {
			b = make([]float32, 10)
		}
		p.give(make([]float32, 7)) // what the run lent itself: no tick
		p.put(b)
	}
	for range staleAfter {
		run()
	}
	if b := p.take(1000); !sameSlice(b, big) {
		t.Fatalf("a buffer unused for %d batches was let go", staleAfter)
	}
	p.put(big)
	for range staleAfter + 1 {
		run()
	}
	if b := p.take(1000); !sameSlice(b, big) {
		t.Fatalf("a buffer unused for %d batches but less than %v was let go", staleAfter+1, staleTime)
	}
	p.put(big)
	clock.t = clock.t.Add(staleTime)
	for range staleAfter + 1 {
		run()
	}
	if p.take(1000) != nil {
		t.Fatalf("a buffer unused for %d batches and %v is still pooled", staleAfter+1, staleTime)
	}
	// A spare of a length runs take one of at a time goes too.
	spare, used := make([]float32, 10), make([]float32, 10)
	p.drop()
	p.give(spare)
	p.put(used)
	clock.t = clock.t.Add(staleTime)
	for range staleAfter + 1 {
		run()
	}
	if b := p.take(10); !sameSlice(b, used) || p.take(10) != nil {
		t.Fatal("the spare buffer was kept, or the one in use let go")
	}
	var bytes int64
	for n, list := range p.free {
		bytes += 4 * int64(n) * int64(len(list))
	}
	if bytes != p.bytes {
		t.Fatalf("pool counts %d bytes, holds %d", p.bytes, bytes)
	}
}

func TestBufPoolKeepsTheLargestBatch(t *testing.T) {
	var p bufPool
	n := minPooled/4 + 1 // one buffer over the floor
	a := make([]float32, n)
	p.put(a, make([]float32, 5))
	if b := p.take(n); !sameSlice(b, a) {
		t.Fatal("a batch larger than the floor was not pooled whole")
	}
	p.put(a)
	// A second batch of the same size evicts the other length first.
	if p.put(make([]float32, n)); p.take(5) != nil || p.take(n) == nil {
		t.Fatal("a batch that did not fit kept another length's buffers")
	}
}

// A buffer given back twice, in one batch or in two, is pooled once: two
// takes never hand out the same memory.
func TestBufPoolHoldsABufferOnce(t *testing.T) {
	var p bufPool
	a, b := make([]float32, 1000), make([]float32, 1000)
	p.put(a, a)
	p.put(a)
	p.give(a)
	p.put(b)
	got1, got2, got3 := p.take(1000), p.take(1000), p.take(1000)
	if got1 == nil || got2 == nil || got3 != nil {
		t.Fatalf("takes gave %v, %v, %v: want a and b once each", got1 != nil, got2 != nil, got3 != nil)
	}
	if &got1[0] == &got2[0] {
		t.Fatal("the same buffer was handed out twice")
	}
	// Once taken it may come back again.
	p.put(got1)
	if again := p.take(1000); again == nil || &again[0] != &got1[0] {
		t.Fatal("a buffer taken and given back was not pooled again")
	}
}

// Capturing the logits point makes an Output whose logits and captured
// logits are one buffer; its Release must pool that buffer once (pooled
// twice, two later runs wrote their logits into the same memory, and the
// pool's room filled with logits-sized copies while the pass's buffers were
// let go: a warm 4x128 capture of GPT-2 small allocated its 103 MB logits
// anew in most runs).
func TestReleaseOfCapturedLogitsPoolsThemOnce(t *testing.T) {
	m, err := Open(goldenModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rows := [][]int{{464, 2068, 7586}}
	for i := 0; i < 3; i++ { // the second and later runs write into pooled memory
		out, err := m.Forward(context.Background(), rows, Capture(AllPoints))
		if err != nil {
			t.Fatal(err)
		}
		lg := out.Activations[hooks.Site{Point: hooks.Logits, Layer: -1}]
		aliased := lg != nil && &lg.Data[0] == &out.Logits.Data[0]
		if i > 0 && !aliased {
			t.Fatalf("run %d: the captured logits are not the Output's logits: this test no longer covers the case", i)
		}
		out.Release()
		m.bufs.mu.Lock()
		seen := map[*float32]bool{}
		for n, list := range m.bufs.free {
			for _, x := range list {
				if seen[&x.buf[0]] {
					t.Errorf("run %d: a buffer of %d floats is pooled twice", i, n)
				}
				seen[&x.buf[0]] = true
			}
		}
		m.bufs.mu.Unlock()
	}
}
