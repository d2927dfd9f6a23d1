package runtime

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// bwdExec is the state of one backward run. It owns the values it made
// (owned) and borrows the forward pass's, which it frees as soon as no later
// segment reads them (the forward pass is over: only the backward pass
// reads them, and releasing a value twice is harmless).
type bwdExec struct {
	p      *bwdPlan
	hs     *hooks.Set
	ro     *runOptions
	vals   map[string]*value
	owned  map[*value]bool
	next   int                          // next segment to run
	called []bool                       // sites whose hooks have run
	grads  map[hooks.Site]*hooks.Tensor // the gradients asked for
}

func newBwdExec(p *bwdPlan, hs *hooks.Set, grads map[hooks.Site]*hooks.Tensor) *bwdExec {
	return &bwdExec{p: p, hs: hs, vals: map[string]*value{}, owned: map[*value]bool{},
		called: make([]bool, len(p.sites)), grads: grads}
}

// drop forgets a value and frees it.
func (x *bwdExec) drop(name string) {
	if v, ok := x.vals[name]; ok {
		v.release()
		delete(x.owned, v)
		delete(x.vals, name)
	}
}

// set stores a value the run owns.
func (x *bwdExec) set(name string, v *value) {
	x.drop(name)
	x.vals[name] = v
	x.owned[v] = true
}

func (x *bwdExec) put(name string, t *Tensor) error {
	if t == nil {
		return fmt.Errorf("backward: forward value %s missing", name)
	}
	v, err := toValue(t)
	if err != nil {
		return fmt.Errorf("backward: %s: %w", name, err)
	}
	x.set(name, v)
	return nil
}

func (x *bwdExec) release() {
	for v := range x.owned {
		v.release()
	}
	x.vals, x.owned = nil, nil
}

// pending reports whether a site still to be visited reads tensor name.
func (x *bwdExec) pending(name string) bool {
	for i, s := range x.p.sites {
		if !x.called[i] && s.grad == name {
			return true
		}
	}
	return false
}

func (x *bwdExec) runSegment(ctx context.Context) error {
	i := x.next
	sg := x.p.segs[i]
	outs, err := runSegment(ctx, x.ro, sg.sess, sg.inputs, x.vals, x.p.cutSites, x.callOnce, fmt.Sprintf("backward segment %d of %d", i+1, len(x.p.segs)), nil)
	if err != nil {
		return err
	}
	for j, name := range sg.outputs {
		x.set(name, outs[j])
	}
	x.next++
	// Drop what no later segment or site reads.
	for name := range x.vals {
		if last, ok := x.p.lastUse[name]; (!ok || last < x.next) && !x.pending(name) {
			x.drop(name)
		}
	}
	return nil
}

func (x *bwdExec) ensure(ctx context.Context, name string) error {
	return runUntil(ctx, x.vals, name, func() bool { return x.next < len(x.p.segs) }, x.runSegment)
}

// run visits the sites in backward order.
func (x *bwdExec) run(ctx context.Context) error {
	tensorOf := func(i int) string { return x.p.sites[i].grad }
	return visitSites(ctx, len(x.p.sites), x.called, tensorOf, x.ensure, x.callOnce)
}

func (x *bwdExec) callOnce(i int) error {
	if x.called[i] {
		return nil
	}
	x.called[i] = true
	return x.callSite(x.p.sites[i])
}

// callSite records a wanted gradient and hands it to the site's bwd hooks;
// for a written site, what they return replaces it.
func (x *bwdExec) callSite(s bwdSite) error {
	v := x.vals[s.grad]
	_, data, ok := valueF32(v)
	if !ok {
		return fmt.Errorf("gradient at %s is not float32", s.site)
	}
	perm := s.ref.Perm
	if isIdentity(perm) {
		perm = nil
	}
	ht := hookTensor(v, perm)
	if !s.hook {
		if s.want {
			x.grads[s.site] = ht.Clone()
		}
		return nil
	}
	var arrived func(*hooks.Tensor)
	if s.want {
		arrived = func(t *hooks.Tensor) { x.grads[s.site] = t.Clone() }
	}
	shared := !s.write && perm == nil
	out, err := x.hs.CallBwd(s.site, ht, shared, arrived)
	if err != nil {
		return err
	}
	if !s.write {
		return nil
	}
	nv, err := writeBack(out, data, perm)
	if err != nil || nv == nil {
		if err != nil {
			err = fmt.Errorf("gradient at %s: %w", s.site, err)
		}
		return err
	}
	x.set(s.grad, nv)
	return nil
}
