package modelctx

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// bufPool keeps the memory of logits and captured activations that their
// Output gave back (Output.Release, Views.Release), and the memory a run
// lent itself for read points and observers' copies, so the next Forward of
// the same shape writes into it instead of allocating: a warm Forward then
// allocates no tensor memory.
//
// It holds at least minPooled bytes and at most as much as the largest
// batch of buffers given back at once (one pass's captures: a pass that
// captures more than minPooled is pooled whole). A batch that does not fit
// first evicts buffers of lengths it does not have (memory of other
// shapes); what still does not fit is left to the garbage collector. A
// buffer that no run took while staleAfter batches came back and for
// staleTime is let go too: memory of a shape no longer run, or a spare only
// another kind of run used, does not stay for good, while runs of several
// kinds taking turns (a server's, a benchmark's rounds) keep theirs.
type bufPool struct {
	mu    sync.Mutex
	free  map[int][]pooled // by length
	bytes int64
	limit int64
	clock uint64 // batches given back so far
	now   func() time.Time
	// held marks the buffers in free by their first element: a buffer
	// given back twice (an Output whose captured logits are its Logits)
	// is pooled once, so that two runs are never handed the same memory.
	held map[*float32]bool
	// copied counts the bytes clone copied (tests tell written-in-place
	// captures from copied ones by it); made the bytes alloc could not
	// find pooled.
	copied, made atomic.Int64
}

// pooled is a free buffer, the clock when it came back and the time.
type pooled struct {
	buf  []float32
	at   uint64
	when time.Time
}

const (
	minPooled  = 256 << 20
	staleAfter = 4
	staleTime  = 10 * time.Second
)

// clone copies x into a pooled buffer of its size, or a new one.
func (p *bufPool) clone(x *hooks.Tensor) *hooks.Tensor {
	buf := p.take(len(x.Data))
	if buf == nil {
		buf = make([]float32, len(x.Data))
	}
	copy(buf, x.Data)
	p.copied.Add(4 * int64(len(x.Data)))
	return &hooks.Tensor{Shape: append([]int(nil), x.Shape...), Data: buf}
}

// alloc hands out a pooled buffer of length n, or a new one (the memory a
// run writes captured points into).
func (p *bufPool) alloc(n int) []float32 {
	if buf := p.take(n); buf != nil {
		return buf
	}
	p.made.Add(4 * int64(n))
	return make([]float32, n)
}

// take hands out a pooled buffer of length n, or nil where there is none.
func (p *bufPool) take(n int) []float32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.free[n]
	if n <= 0 || len(list) == 0 {
		return nil
	}
	buf := list[len(list)-1].buf
	p.free[n] = list[:len(list)-1]
	p.bytes -= 4 * int64(n)
	delete(p.held, &buf[0])
	return buf
}

// sameSlice reports whether a and b are the same memory.
func sameSlice(a, b []float32) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// put takes a batch of buffers back (what one Output held), as far as the
// pool has room; it advances the clock that ages unused buffers.
func (p *bufPool) put(bufs ...[]float32) { p.giveBack(true, bufs) }

// give takes back buffers a run lent itself (Request.Free, the hooks'
// scratch): they do not size the pool nor advance its clock.
func (p *bufPool) give(bufs ...[]float32) { p.giveBack(false, bufs) }

func (p *bufPool) giveBack(batch bool, bufs [][]float32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free == nil {
		p.free = map[int][]pooled{}
		p.held = map[*float32]bool{}
	}
	// Each buffer once: not one already pooled, nor one listed twice.
	seen := map[*float32]bool{}
	bufs = slices.DeleteFunc(slices.Clone(bufs), func(b []float32) bool {
		if len(b) == 0 || p.held[&b[0]] || seen[&b[0]] {
			return true
		}
		seen[&b[0]] = true
		return false
	})
	var size int64
	lengths := map[int]bool{}
	for _, b := range bufs {
		size += 4 * int64(len(b))
		lengths[len(b)] = true
	}
	p.limit = max(p.limit, minPooled)
	if p.now == nil {
		p.now = time.Now
	}
	now := p.now()
	if batch {
		p.clock++
		p.limit = max(p.limit, size)
		p.evictStale(now)
	}
	for n, list := range p.free {
		if p.bytes+size <= p.limit {
			break
		}
		if !lengths[n] {
			p.bytes -= 4 * int64(n) * int64(len(list))
			p.unhold(list)
			delete(p.free, n)
		}
	}
	for _, b := range bufs {
		if p.bytes+4*int64(len(b)) > p.limit {
			continue
		}
		p.free[len(b)] = append(p.free[len(b)], pooled{b, p.clock, now})
		p.held[&b[0]] = true
		p.bytes += 4 * int64(len(b))
	}
}

// unhold forgets the buffers of list as pooled (they are being let go).
func (p *bufPool) unhold(list []pooled) {
	for _, x := range list {
		delete(p.held, &x.buf[0])
	}
}

// evictStale lets go of the buffers no run took for staleAfter batches and
// staleTime. A length's list is in the order its buffers came back (take
// pops the latest), so the stale ones are at its start.
func (p *bufPool) evictStale(now time.Time) {
	for n, list := range p.free {
		k := 0
		for k < len(list) && list[k].at+staleAfter < p.clock && now.Sub(list[k].when) >= staleTime {
			k++
		}
		if k == 0 {
			continue
		}
		p.bytes -= 4 * int64(n) * int64(k)
		p.unhold(list[:k])
		if k == len(list) {
			delete(p.free, n)
			continue
		}
		clear(list[:k])
		p.free[n] = list[k:]
	}
}

// drop empties the pool.
func (p *bufPool) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free, p.held, p.bytes = nil, nil, 0
}

// Release hands the memory of the Output's logits and captured
// activations back to its Transformer, whose next Forward (or ForwardViews)
// writes into it instead of allocating. Neither Logits nor Activations may be used after
// (they are set to nil). Calling it is optional: without it the memory is
// garbage collected as usual. Releasing twice is harmless.
func (o *Output) Release() {
	if o == nil || o.pool == nil {
		return
	}
	bufs := make([][]float32, 0, len(o.Activations)+1)
	for _, a := range o.Activations {
		bufs = append(bufs, a.Data)
		a.Data = nil
	}
	if o.Logits != nil {
		bufs = append(bufs, o.Logits.Data)
		o.Logits = nil
	}
	o.pool.put(bufs...)
	o.Activations, o.pool = nil, nil
}
