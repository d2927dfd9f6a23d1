package runtime

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Outputs written where they are wanted. A segment's output that the run
// hands to the caller in Go memory (an output with a Request.Into buffer,
// or a captured site's tensor where Request.Alloc gives memory) costs a copy
// out of ONNX Runtime's arena, and the arena holds it meanwhile. Where the
// run knows the output's shape before the segment runs, it gives ONNX
// Runtime that Go memory as the output instead, and the kernel that makes
// the tensor writes it there: no copy, and nothing of it in the arena.
//
// The shapes are learned: a plan remembers the shapes its segments' float
// outputs had for each signature of input shapes. Its first run of a
// signature goes by the graph's declared shapes (with the request's sizes
// bound to their symbols), where they are declared. Should a given output
// not have the shape expected, ONNX Runtime refuses it, and the segment is
// run again with ONNX Runtime allocating: a wrong declared shape only costs
// the first run that; after a wrong learned one (a graph whose shapes
// depend on data), the plan gives no memory for that signature again.

// maxSignatures bounds the input-shape signatures a plan remembers (a
// server sees any number of shapes); past it the plan forgets them all.
const maxSignatures = 64

// shapeMemory is a plan's learned output shapes, by input signature.
type shapeMemory struct {
	mu   sync.Mutex
	sigs map[string]map[string][]int64
}

func (m *shapeMemory) lookup(sig string) map[string][]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sigs[sig]
}

func (m *shapeMemory) learn(sig string, shapes map[string][]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sigs == nil || len(m.sigs) >= maxSignatures {
		m.sigs = map[string]map[string][]int64{}
	}
	m.sigs[sig] = shapes
}

// signature names a request's input shapes (tensors and values).
func signature(req Request) string {
	parts := make([]string, 0, len(req.Inputs)+len(req.Values))
	add := func(name string, shape []int64) {
		var b strings.Builder
		b.WriteString(name)
		for _, d := range shape {
			b.WriteByte(',')
			b.WriteString(strconv.FormatInt(d, 10))
		}
		parts = append(parts, b.String())
	}
	for name, t := range req.Inputs {
		if t != nil {
			add(name, t.Shape)
		}
	}
	for name, v := range req.Values {
		add(name, v.Shape())
	}
	slices.Sort(parts)
	return strings.Join(parts, ";")
}

// preallocation is what one run writes into Go memory.
type preallocation struct {
	sig   string
	known map[string][]int64 // the shapes outputs are given memory by
	// seen collects the shapes this run learns, where known holds the
	// graph's declared shapes (nil where known was learned).
	seen  map[string][]int64
	into  map[string][]float32
	alloc func(n int) []float32
	// wanted are the tensors alloc gives memory for (captured sites read
	// as they are); from are the values over that memory.
	wanted map[string]bool
	from   map[*value]bool
	// captured are the tensors of Request.Capture's sites. With
	// Request.Free, the tensors of the plan's other sites that are no
	// outputs (reads: what the run hands to hooks only) are written into
	// alloc's memory too, and scratch maps each value over such memory to
	// it, until free takes it back when the run is done with the value.
	captured map[string]bool
	free     func(...[]float32)
	scratch  map[*value][]float32
}

// reads reports whether tensor name is one the run lends itself alloc's
// memory for (a site's tensor only hooks see).
func (pa *preallocation) reads(p *plan, name string) bool {
	_, site := p.lastSite[name]
	return pa.free != nil && site && !p.outputs[name] && !pa.captured[name]
}

// preallocation prepares a run's writing into Go memory: the shapes are
// the plan's learned ones for the request's signature or, on its first run
// with it, the graph's declared shapes with the request's sizes bound.
func (e *Engine) preallocation(p *plan, req Request) *preallocation {
	pa := &preallocation{sig: signature(req), into: req.Into, alloc: req.Alloc, wanted: map[string]bool{}, from: map[*value]bool{}}
	pa.captured = map[string]bool{}
	for _, s := range req.Capture {
		if ref, ok := e.g.Points[s]; ok {
			pa.captured[ref.Tensor] = true
			if isIdentity(ref.Perm) {
				pa.wanted[ref.Tensor] = true
			}
		}
	}
	if req.Alloc != nil && req.Free != nil {
		pa.free, pa.scratch = req.Free, map[*value][]float32{}
	}
	if pa.known = p.shapes.lookup(pa.sig); pa.known != nil {
		return pa
	}
	pa.seen = map[string][]int64{}
	pa.known = map[string][]int64{}
	bound := e.symbols(req)
	for name := range p.lastSite { // the sites' tensors: wanted ones among them
		if pa.wanted[name] || pa.reads(p, name) {
			if shape, ok := e.declaredShape(name, bound); ok {
				pa.known[name] = shape
			}
		}
	}
	for name := range req.Into {
		if shape, ok := e.declaredShape(name, bound); ok {
			pa.known[name] = shape
		}
	}
	return pa
}

// giveBack hands the memory of a released value, where it came from
// Request.Alloc for the run's own use, to Request.Free.
func (x *execution) giveBack(v *value) {
	if pa := x.pa; pa != nil {
		if buf, ok := pa.scratch[v]; ok {
			delete(pa.scratch, v)
			pa.free(buf)
		}
	}
}

// outputsFor builds the memory given to segment sg's outputs: nil where the
// run does not know an output's shape or has no Go memory for it.
func (x *execution) outputsFor(sg *segRun) ([]*value, error) {
	pa := x.pa
	if pa == nil || pa.known == nil || sg.sess.cs.dev != nil {
		return nil, nil // a session binding device outputs takes no memory
	}
	var pre []*value
	for j, name := range sg.sess.outputs {
		shape, ok := pa.known[name]
		if !ok {
			continue
		}
		n := numel(shape)
		if 4*n < smallValue { // newValue would copy it into C memory
			continue
		}
		var buf []float32
		switch {
		case x.p.outputs[name] && !x.keep[name] && len(pa.into[name]) == n:
			buf = pa.into[name]
		case (pa.wanted[name] || pa.reads(x.p, name)) && pa.alloc != nil:
			if buf = pa.alloc(n); len(buf) != n {
				buf = nil
			}
		}
		if buf == nil {
			continue
		}
		v, err := newValue(shape, buf)
		if err != nil {
			releaseAll(pre)
			return nil, err
		}
		if pre == nil {
			pre = make([]*value, len(sg.sess.outputs))
		}
		pre[j] = v
		if pa.wanted[name] {
			pa.from[v] = true
		} else if pa.reads(x.p, name) {
			pa.scratch[v] = buf
		}
	}
	return pre, nil
}

// runGiven runs segment sg with its outputs written where outputsFor says,
// again with ONNX Runtime allocating if that fails (a remembered shape no
// longer right), and remembers its output shapes where none were known.
func (x *execution) runGiven(ctx context.Context, sg *segRun, what string) ([]*value, error) {
	pre, err := x.outputsFor(sg)
	if err != nil {
		return nil, err
	}
	outs, err := runSegment(ctx, x.ro, sg.sess, sg.inputs, x.vals, x.p.cutSites, x.callOnce, what, pre)
	if err != nil {
		releaseAll(pre) // nil entries are no-ops
		for _, v := range pre {
			delete(x.pa.from, v)
			x.giveBack(v)
		}
		if pre == nil || ctx.Err() != nil {
			return nil, err
		}
		if x.pa.seen == nil {
			// A learned shape was refused: later runs of the signature
			// let ONNX Runtime allocate and learn nothing.
			x.p.shapes.learn(x.pa.sig, map[string][]int64{})
		}
		// A declared shape was wrong: this run still learns the real ones.
		x.pa.known = nil
		if outs, err = runSegment(ctx, x.ro, sg.sess, sg.inputs, x.vals, x.p.cutSites, x.callOnce, what, nil); err != nil {
			return nil, err
		}
	}
	if pa := x.pa; pa != nil && pa.seen != nil {
		for j, name := range sg.sess.outputs {
			if v := outs[j]; v.elem == elemFloat && !v.dev {
				pa.seen[name] = slices.Clone(v.shape)
			}
		}
	}
	return outs, nil
}

// learned publishes the shapes a complete run saw.
func (x *execution) learned() {
	if pa := x.pa; pa != nil && pa.seen != nil {
		x.p.shapes.learn(pa.sig, pa.seen)
		pa.seen = nil
	}
}
