package runtime

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// execution is the state of one run of a plan. Values produced by segments
// stay in ONNX Runtime's memory: hooks see them without a copy, and the next
// segment reads them as they are.
type execution struct {
	p     *plan
	hs    *hooks.Set
	ro    *runOptions
	vals  map[string]*value
	owned []*value
	// borrowed are the caller's input values: read, never released.
	borrowed map[*value]bool
	next     int    // next segment to run
	called   []bool // sites whose hooks have run
	// capture names the sites whose values the caller takes as views
	// (capture.go); held are the values they view, which nothing in the
	// run releases; caught collects them.
	capture map[hooks.Site]bool
	held    map[*value]bool
	caught  *captured
	// pa is the Go memory outputs are written into (prealloc.go), or nil.
	pa *preallocation
	// keep are the outputs the run hands back as values (Request.Keep).
	keep map[string]bool
}

func newExec(p *plan, hs *hooks.Set) *execution {
	return &execution{p: p, hs: hs, vals: map[string]*value{}, borrowed: map[*value]bool{}, called: make([]bool, len(p.sites)),
		held: map[*value]bool{}}
}

func (x *execution) own(v *value) { x.owned = append(x.owned, v) }

// detach hands an owned value over to the caller.
func (x *execution) detach(v *value) {
	for i, o := range x.owned {
		if o == v {
			x.owned = append(x.owned[:i], x.owned[i+1:]...)
			return
		}
	}
}

func (x *execution) release() {
	releaseAll(x.owned)
	for _, v := range x.owned {
		x.giveBack(v)
	}
	x.owned = nil
	x.vals = nil
}

// runSegment runs the next segment.
func (x *execution) runSegment(ctx context.Context) error {
	i := x.next
	sg := x.p.segs[i]
	outs, err := x.runGiven(ctx, sg, fmt.Sprintf("segment %d of %d", i+1, len(x.p.segs)))
	if err != nil {
		return err
	}
	for j, name := range sg.sess.outputs {
		x.own(outs[j])
		x.vals[name] = outs[j]
	}
	x.next++
	// Inputs no later segment, site or caller needs are freed now.
	for _, name := range sg.inputs {
		x.maybeRelease(name)
	}
	return nil
}

// maybeRelease frees a value once nothing will read it: no later segment,
// no site whose hooks have yet to run, not a requested output.
func (x *execution) maybeRelease(name string) {
	v, ok := x.vals[name]
	if !ok || x.p.outputs[name] || x.p.lastUse[name] >= x.next || x.borrowed[v] || x.held[v] {
		return
	}
	if i, isSite := x.p.lastSite[name]; isSite && !x.called[i] {
		return
	}
	v.release()
	x.giveBack(v)
	delete(x.vals, name)
}

// ensure runs segments until tensor name is available.
func (x *execution) ensure(ctx context.Context, name string) error {
	return runUntil(ctx, x.vals, name, func() bool { return x.next < len(x.p.segs) }, x.runSegment)
}

func (x *execution) run(ctx context.Context) error {
	tensorOf := func(i int) string { return x.p.sites[i].ref.Tensor }
	if err := visitSites(ctx, len(x.p.sites), x.called, tensorOf, x.ensure, x.callOnce); err != nil {
		return err
	}
	for x.next < len(x.p.segs) {
		if err := x.runSegment(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (x *execution) callOnce(i int) error {
	if x.called[i] {
		return nil
	}
	x.called[i] = true
	if err := x.callSite(x.p.sites[i]); err != nil {
		return err
	}
	if err := x.captureSite(i); err != nil {
		return err
	}
	x.maybeRelease(x.p.sites[i].ref.Tensor)
	return nil
}

// callSite hands the site's tensor to its hooks and, for a written site,
// puts what they return in its place.
func (x *execution) callSite(s siteRef) error {
	v := x.vals[s.ref.Tensor]
	if x.borrowed[v] && s.write && !v.dev {
		// A caller's input value: the hooks edit a copy of it.
		t, err := fromValue(v)
		if err != nil {
			return fmt.Errorf("hook point %s: %w", s.site, err)
		}
		if v, err = toValue(t); err != nil {
			return fmt.Errorf("hook point %s: %w", s.site, err)
		}
		x.own(v)
		x.vals[s.ref.Tensor] = v
	}
	if v.dev {
		return fmt.Errorf("hook point %s: tensor %s: %w", s.site, s.ref.Tensor, errOnDevice)
	}
	if v.elem != elemFloat {
		return fmt.Errorf("hook point %s: tensor %s is not float32", s.site, s.ref.Tensor)
	}
	data := v.f32()
	perm := s.ref.Perm
	if isIdentity(perm) {
		perm = nil
	}
	ht := hookTensor(v, perm)
	// A read-only site whose value later segments also read, the run hands
	// back as a value (a KV cache the next run continues from), or the
	// caller gave: observers get a copy, so they cannot change the pass. An
	// output copied out to the caller (the logits) is seen as it is: nothing
	// computes from it, and copying it cost a second logits-sized buffer.
	shared := !s.write && perm == nil && (x.p.lastUse[s.ref.Tensor] >= x.next || x.keep[s.ref.Tensor] || x.borrowed[v])
	out, err := x.hs.Call(s.site, ht, shared)
	if err != nil {
		return err
	}
	if !s.write {
		return nil
	}
	nv, err := writeBack(out, data, perm)
	if err != nil || nv == nil {
		if err != nil {
			err = fmt.Errorf("hook point %s: %w", s.site, err)
		}
		return err
	}
	x.own(nv)
	x.vals[s.ref.Tensor] = nv
	return nil
}
