package modelctx

import (
	"testing"
	"time"
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
