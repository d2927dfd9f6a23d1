package runtime

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"google.golang.org/protobuf/proto"
)

// ErrSeed is returned when a loss gives a gradient that does not fit the
// value it differentiates.
var ErrSeed = errors.New("bad loss gradient")

// BackwardRequest is a forward pass followed by a backward pass from a loss
// on the value at one hook site.
type BackwardRequest struct {
	Inputs  map[string]*Tensor
	Hooks   *hooks.Set // fwd/fwd2 hooks run in the forward pass, bwd hooks in the backward pass
	Outputs []string   // forward tensors to return as well (e.g. "logits")
	// Root is the site the loss reads: the logits for a loss on the model's
	// output, an internal site for a loss on one activation (the original's
	// fwd2 "grab").
	Root hooks.Site
	// Seed returns d(loss)/d(value at Root) given that value, both in the
	// layout hooks see. Used when RootRows is nil.
	Seed func(root *hooks.Tensor) (*hooks.Tensor, error)
	// RootRows, when not nil, are the rows of the root value the loss reads:
	// index tuples over all its axes but the last ((batch, position) for the
	// logits). SeedRows then gets those rows, [len(RootRows), last axis],
	// and returns their gradient; the rest of the root gets none. Where the
	// root is computed from a hook site by row-wise operations only (the
	// logits from resid.post_ln_f) and has no hooks, the engine computes
	// those rows alone (BackwardResult.Root is then nil).
	RootRows [][]int
	SeedRows func(rows *hooks.Tensor) (*hooks.Tensor, error)
	// Grads are the sites whose gradients to return: d(loss)/d(value at the
	// site) as that site's bwd hooks receive it (after the VJP of a writing
	// fwd2 hook, see hooks.VJPOf), before they run.
	Grads []hooks.Site
	// Stop are sites where the gradient stops (the original's detach): the
	// gradient at the site is still computed, nothing flows upstream of it.
	Stop []hooks.Site
}

// BackwardResult holds the forward outputs and the gradients.
type BackwardResult struct {
	Outputs map[string]*Tensor
	Root    *hooks.Tensor                // forward value at the root (nil when only its rows were computed)
	Grads   map[hooks.Site]*hooks.Tensor // zero where no gradient reaches
}

// bwdSite is a site the backward pass stops at.
type bwdSite struct {
	site  hooks.Site
	ref   PointRef
	grad  string // the gradient tensor
	write bool   // a bwd hook may replace the gradient: the graph is cut here
	hook  bool   // the site has bwd hooks
	want  bool   // its gradient is returned
}

type bwdSeg struct {
	sess    *session
	inputs  []string
	outputs []string
}

// bwdPlan is a backward graph cut at the sites whose gradient a hook may
// replace, with its sessions.
type bwdPlan struct {
	segs    []*bwdSeg
	sites   []bwdSite    // in backward order, each reached by a gradient
	zero    []hooks.Site // wanted sites no gradient reaches
	root    string
	seed    string   // seed input, "" when no gradient reaches any wanted site
	forward []string // computed forward values the backward graph reads
	inputs  []string // model inputs it reads
	lastUse map[string]int
}

func (p *bwdPlan) close() error {
	var errs []error
	for _, s := range p.segs {
		errs = append(errs, s.sess.close())
	}
	return errors.Join(errs...)
}

type bwdSlot struct {
	once sync.Once
	p    *bwdPlan
	err  error
}

// bwdPlans is the engine's cache of backward plans.
type bwdPlans struct {
	mu    sync.Mutex
	slots map[string]*bwdSlot
	heads map[hooks.Site]*headSlot
}

func (c *bwdPlans) close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, s := range c.slots {
		if s.p != nil {
			errs = append(errs, s.p.close())
		}
	}
	for _, h := range c.heads {
		errs = append(errs, h.h.close())
	}
	c.slots, c.heads = nil, nil
	return errors.Join(errs...)
}

// bwdKey is what a backward plan depends on.
type bwdKey struct {
	root     hooks.Site
	want     map[hooks.Site]bool
	stop     map[hooks.Site]bool
	bwd      map[hooks.Site]hooks.Use // bwd hooks
	written  map[hooks.Site]bool      // sites fwd/fwd2 hooks may write
	switched map[hooks.Site]bool      // sites whose switch is taken
}

func (k bwdKey) String() string {
	var parts []string
	add := func(tag string, m map[hooks.Site]bool) {
		for s, ok := range m {
			if ok {
				parts = append(parts, tag+s.String())
			}
		}
	}
	add("want:", k.want)
	add("stop:", k.stop)
	add("written:", k.written)
	add("switch:", k.switched)
	for s, u := range k.bwd {
		parts = append(parts, fmt.Sprintf("bwd:%s=%d", s, u))
	}
	sort.Strings(parts)
	return "root:" + k.root.String() + "|" + strings.Join(parts, "|")
}

// BackwardPlanCount is the number of backward plans built so far.
func (e *Engine) BackwardPlanCount() int {
	e.mu.Lock()
	c := e.bwd
	e.mu.Unlock()
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.slots)
}

func (e *Engine) backwardPlan(k bwdKey) (*bwdPlan, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	if e.bwd == nil {
		e.bwd = &bwdPlans{slots: map[string]*bwdSlot{}}
	}
	c := e.bwd
	e.mu.Unlock()
	key := k.String()
	c.mu.Lock()
	if c.slots == nil {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	slot, ok := c.slots[key]
	if !ok {
		slot = &bwdSlot{}
		c.slots[key] = slot
	}
	c.mu.Unlock()
	slot.once.Do(func() { slot.p, slot.err = e.buildBackward(k) })
	if slot.err != nil {
		c.mu.Lock()
		if c.slots != nil && c.slots[key] == slot {
			delete(c.slots, key)
		}
		c.mu.Unlock()
	}
	return slot.p, slot.err
}

// buildBackward differentiates the model for one plan key and opens the
// sessions of the backward graph's segments.
func (e *Engine) buildBackward(k bwdKey) (*bwdPlan, error) {
	model := e.g.Model
	cloned := false
	for _, sw := range e.g.Switches {
		for s := range k.switched {
			if sw.Point != s.Point.Path() || sw.Layer != s.Layer {
				continue
			}
			if !cloned {
				model = proto.Clone(model).(*onnxpb.ModelProto)
				cloned = true
			}
			if err := graphs.Rewire(model, sw.Replace, sw.With); err != nil {
				return nil, fmt.Errorf("switch at %s: %w", s, err)
			}
		}
	}
	ref := func(s hooks.Site) (PointRef, error) {
		r, ok := e.g.Points[s]
		if !ok {
			return PointRef{}, fmt.Errorf("%w: %s", ErrNoPoint, s)
		}
		return r, nil
	}
	rootRef, err := ref(k.root)
	if err != nil {
		return nil, err
	}
	// Every site the backward pass visits, in backward order.
	visit := map[hooks.Site]hooks.Use{}
	for s := range k.want {
		visit[s] = hooks.Read
	}
	for s, u := range k.bwd {
		if u > visit[s] {
			visit[s] = u
		}
	}
	order := hooks.SitesInBackwardOrder(visit, e.g.NLayers)
	var wrt, stop, saved, replaced []string
	seen := map[string]bool{}
	for _, s := range order {
		r, err := ref(s)
		if err != nil {
			return nil, err
		}
		if !seen[r.Tensor] {
			seen[r.Tensor] = true
			wrt = append(wrt, r.Tensor)
		}
	}
	for s := range k.stop {
		r, err := ref(s)
		if err != nil {
			return nil, err
		}
		stop = append(stop, r.Tensor)
	}
	for s := range k.written {
		if r, ok := e.g.Points[s]; ok {
			replaced = append(replaced, r.Tensor)
		}
	}
	for _, r := range e.g.Points {
		saved = append(saved, r.Tensor)
	}
	sort.Strings(stop)
	sort.Strings(saved)
	sort.Strings(replaced)
	gr, err := graphs.Backward(model, graphs.GradSpec{
		Seeds: []string{rootRef.Tensor}, Wrt: wrt, Stop: stop, Saved: saved, Replaced: replaced,
	})
	if err != nil {
		return nil, fmt.Errorf("backward plan: %w", err)
	}
	p := &bwdPlan{root: rootRef.Tensor, lastUse: map[string]int{}}
	zero := map[string]bool{}
	for _, t := range gr.Zero {
		zero[t] = true
	}
	var cuts, reads []string
	cutSeen := map[string]bool{}
	for _, s := range order {
		r, _ := ref(s)
		if zero[r.Tensor] {
			if k.want[s] {
				p.zero = append(p.zero, s)
			}
			continue
		}
		bs := bwdSite{site: s, ref: r, grad: graphs.GradName(r.Tensor), write: k.bwd[s] == hooks.Write, hook: k.bwd[s] != hooks.Unused, want: k.want[s]}
		p.sites = append(p.sites, bs)
		if bs.write && !cutSeen[bs.grad] {
			cutSeen[bs.grad] = true
			cuts = append(cuts, bs.grad)
		}
	}
	for _, s := range p.sites {
		if !cutSeen[s.grad] {
			reads = append(reads, s.grad)
		}
	}
	if len(p.sites) == 0 || len(gr.Seeds) == 0 {
		return p, nil
	}
	p.seed = gr.Seeds[0]
	inputs := map[string]bool{}
	for _, in := range e.g.Model.GetGraph().GetInput() {
		inputs[in.GetName()] = true
	}
	for _, f := range gr.Forward {
		if inputs[f] {
			p.inputs = append(p.inputs, f)
		} else {
			p.forward = append(p.forward, f)
		}
	}
	segs, err := graphs.Split(gr.Model, graphs.Spec{Outputs: reads, Cuts: cuts})
	if err != nil {
		return nil, fmt.Errorf("backward plan: %w", err)
	}
	for i, sg := range segs {
		tag := fmt.Sprintf("bwd-seg%d-of-%d", i, len(segs))
		sess, err := e.bwdSession(sg.Model, sg.Inputs, sg.Outputs, tag)
		if err != nil {
			p.close()
			return nil, err
		}
		p.segs = append(p.segs, &bwdSeg{sess: sess, inputs: sg.Inputs, outputs: sg.Outputs})
		for _, in := range sg.Inputs {
			p.lastUse[in] = i
		}
	}
	e.afterSessions()
	return p, nil
}

// Backward runs the forward pass with the request's hooks, computes the
// loss gradient at the root from the root's value, and runs the backward
// graph in reverse order of the hook sites: at each site with bwd hooks it
// calls them with the gradient there (the last registered first); a
// gradient a hook returns flows on. Forward values the backward graph needs
// are returned by the forward pass as extra outputs and dropped once the
// last backward segment reading them has run.
func (e *Engine) Backward(ctx context.Context, req BackwardRequest) (*BackwardResult, error) {
	hs := req.Hooks
	if hs == nil {
		hs = hooks.Snapshot()
	}
	if (req.RootRows == nil && req.Seed == nil) || (req.RootRows != nil && req.SeedRows == nil) {
		return nil, fmt.Errorf("%w: no loss", ErrSeed)
	}
	rootRef, ok := e.g.Points[req.Root]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoPoint, req.Root)
	}
	fwdUses, err := hs.Uses(e.g.NLayers)
	if err != nil {
		return nil, err
	}
	bwdUses, err := hs.BwdUses(e.g.NLayers)
	if err != nil {
		return nil, err
	}
	k := bwdKey{root: req.Root, want: map[hooks.Site]bool{}, stop: map[hooks.Site]bool{}, bwd: bwdUses,
		written: map[hooks.Site]bool{}, switched: map[hooks.Site]bool{}}
	for _, s := range req.Grads {
		k.want[s] = true
	}
	for _, s := range req.Stop {
		k.stop[s] = true
	}
	for s, u := range fwdUses {
		if u == hooks.Write {
			k.written[s] = true
		}
	}
	for _, sw := range e.g.Switches {
		for _, m := range []map[hooks.Site]hooks.Use{fwdUses, bwdUses, toUses(k.want)} {
			for s := range m {
				if sw.Point == s.Point.Path() && sw.Layer == s.Layer {
					k.switched[s] = true
				}
			}
		}
	}
	// The row head: compute only the root rows the loss reads.
	var head *rowHead
	if req.RootRows != nil && fwdUses[req.Root] == hooks.Unused && bwdUses[req.Root] == hooks.Unused &&
		!k.stop[req.Root] && !contains(req.Outputs, rootRef.Tensor) && (rootRef.Perm == nil || isIdentity(rootRef.Perm)) {
		if head, err = e.rowHeadFor(req.Root); err != nil {
			return nil, err
		}
	}
	wantRoot := k.want[req.Root]
	if head != nil {
		k.root = head.site
		delete(k.want, req.Root)
	}
	p, err := e.backwardPlan(k)
	if err != nil {
		return nil, err
	}

	// Forward pass, returning what the loss and the backward graph read.
	outs := append([]string(nil), req.Outputs...)
	have := map[string]bool{}
	for _, o := range outs {
		have[o] = true
	}
	need := append([]string{p.root}, p.forward...)
	for _, s := range p.zero {
		need = append(need, e.g.Points[s].Tensor)
	}
	for _, n := range need {
		if !have[n] {
			have[n] = true
			outs = append(outs, n)
		}
	}
	// The forward values stay in ONNX Runtime's memory until the backward
	// pass is over: the backward graph reads them without a copy.
	fres, releaseFwd, err := e.forwardValues(ctx, Request{Inputs: req.Inputs, Outputs: outs, Hooks: hs})
	if err != nil {
		return nil, err
	}
	defer releaseFwd()
	res := &BackwardResult{Outputs: map[string]*Tensor{}, Grads: map[hooks.Site]*hooks.Tensor{}}
	for _, o := range req.Outputs {
		if res.Outputs[o], err = fromValue(fres[o]); err != nil {
			return nil, fmt.Errorf("output %s: %w", o, err)
		}
	}
	for _, s := range p.zero {
		shape, _, _ := valueF32(fres[e.g.Points[s].Tensor])
		res.Grads[s] = toRef(hooks.Zeros(toInts(shape)...), e.g.Points[s].Perm)
	}
	x := &bwdExec{p: p, hs: hs, vals: map[string]*value{}, owned: map[*value]bool{}}
	defer x.release()
	ro, done, err := cancelOnDone(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	x.ro = ro

	// The gradient at the plan's root.
	var seed *hooks.Tensor // graph layout
	rshape, rdata, ok := valueF32(fres[p.root])
	if !ok {
		return nil, fmt.Errorf("%w: root %s is not a float32 tensor", ErrSeed, req.Root)
	}
	rv := &hooks.Tensor{Shape: toInts(rshape), Data: rdata} // a view, valid until releaseFwd
	if head != nil {
		var gRoot *hooks.Tensor
		seed, gRoot, err = x.runHead(head, rv, req.RootRows, req.SeedRows, wantRoot)
		if err != nil {
			return nil, fmt.Errorf("loss at %s: %w", req.Root, err)
		}
		if wantRoot {
			res.Grads[req.Root] = gRoot
		}
	} else {
		res.Root = toRef(rv.Clone(), rootRef.Perm)
		g, err := rootSeed(req, res.Root)
		if err != nil {
			return nil, fmt.Errorf("loss at %s: %w", req.Root, err)
		}
		seed = fromRef(g, rootRef.Perm)
	}
	if p.seed == "" {
		return res, nil
	}
	if err := x.put(p.seed, &Tensor{Shape: toInt64s(seed.Shape), F32: seed.Data}); err != nil {
		return nil, err
	}
	for _, f := range p.forward {
		v, ok := fres[f]
		if !ok {
			return nil, fmt.Errorf("backward: forward value %s missing", f)
		}
		x.vals[f] = v // borrowed: releaseFwd frees it
	}
	for _, f := range p.inputs {
		if err := x.put(f, req.Inputs[f]); err != nil {
			return nil, err
		}
	}
	if err := x.run(ctx, res.Grads); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("backward: %w", ctx.Err())
		}
		return nil, err
	}
	return res, nil
}

// rootSeed asks the loss for its gradient at the whole root value (in the
// layout hooks see), by rows when the loss reads rows.
func rootSeed(req BackwardRequest, root *hooks.Tensor) (*hooks.Tensor, error) {
	var g *hooks.Tensor
	if req.RootRows == nil {
		var err error
		if g, err = req.Seed(root); err != nil {
			return nil, err
		}
	} else {
		in, offs, err := gatherRows(root.Shape, root.Data, req.RootRows)
		if err != nil {
			return nil, err
		}
		width := root.Shape[len(root.Shape)-1]
		rows := &hooks.Tensor{Shape: []int{len(req.RootRows), width}, Data: in}
		gr, err := req.SeedRows(rows)
		if err != nil {
			return nil, err
		}
		if gr == nil || !gr.SameShape(rows) || len(gr.Data) != gr.Numel() {
			return nil, fmt.Errorf("%w: gradient rows of shape %v for rows of shape %v", ErrSeed, shapeOf(gr), rows.Shape)
		}
		g = &hooks.Tensor{Shape: root.Shape, Data: scatterRows(len(root.Data), width, gr.Data, offs)}
	}
	if g == nil || !root.SameShape(g) || len(g.Data) != g.Numel() {
		return nil, fmt.Errorf("%w: gradient of shape %v for a root of shape %v", ErrSeed, shapeOf(g), root.Shape)
	}
	return g, nil
}

func toUses(m map[hooks.Site]bool) map[hooks.Site]hooks.Use {
	u := map[hooks.Site]hooks.Use{}
	for s := range m {
		u[s] = hooks.Read
	}
	return u
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func toRef(t *hooks.Tensor, perm []int) *hooks.Tensor {
	if perm == nil || isIdentity(perm) {
		return t
	}
	return transpose(t, perm)
}

func fromRef(t *hooks.Tensor, perm []int) *hooks.Tensor {
	if perm == nil || isIdentity(perm) {
		return t
	}
	return transpose(t, inversePerm(perm))
}

// bwdExec is the state of one backward run. It owns the values it made
// (owned) and borrows the forward pass's.
type bwdExec struct {
	p     *bwdPlan
	hs    *hooks.Set
	ro    *runOptions
	vals  map[string]*value
	owned map[*value]bool
	next  int
}

// drop forgets a value, freeing it when owned.
func (x *bwdExec) drop(name string) {
	if v, ok := x.vals[name]; ok {
		if x.owned[v] {
			v.release()
			delete(x.owned, v)
		}
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
	v, err := goValue(t)
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
func (x *bwdExec) pending(name string, from int) bool {
	for _, s := range x.p.sites[from:] {
		if s.grad == name {
			return true
		}
	}
	return false
}

func (x *bwdExec) runSegment(ctx context.Context, site int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	i := x.next
	sg := x.p.segs[i]
	ins := make([]*value, len(sg.inputs))
	for j, name := range sg.inputs {
		v, ok := x.vals[name]
		if !ok {
			return fmt.Errorf("backward segment %d needs %s, which nothing gives", i, name)
		}
		ins[j] = v
	}
	outs, err := runSession(sg.sess, x.ro, ins)
	if err != nil {
		return fmt.Errorf("run backward segment %d of %d: %w", i+1, len(x.p.segs), err)
	}
	for j, name := range sg.outputs {
		x.set(name, outs[j])
	}
	x.next++
	// Drop what no later segment or site reads.
	for name := range x.vals {
		if last, ok := x.p.lastUse[name]; (!ok || last < x.next) && !x.pending(name, site) {
			x.drop(name)
		}
	}
	return nil
}

func (x *bwdExec) ensure(ctx context.Context, name string, site int) error {
	for {
		if _, ok := x.vals[name]; ok {
			return nil
		}
		if x.next >= len(x.p.segs) {
			return fmt.Errorf("gradient %s is not computed by the backward plan", name)
		}
		if err := x.runSegment(ctx, site); err != nil {
			return err
		}
	}
}

func (x *bwdExec) run(ctx context.Context, grads map[hooks.Site]*hooks.Tensor) error {
	for i, s := range x.p.sites {
		if err := x.ensure(ctx, s.grad, i); err != nil {
			return err
		}
		if err := x.callSite(s, grads); err != nil {
			return err
		}
	}
	return nil
}

// callSite records a wanted gradient and hands it to the site's bwd hooks;
// for a written site, what they return replaces it.
func (x *bwdExec) callSite(s bwdSite, grads map[hooks.Site]*hooks.Tensor) error {
	v := x.vals[s.grad]
	shape, data, ok := valueF32(v)
	if !ok {
		return fmt.Errorf("gradient at %s is not float32", s.site)
	}
	perm := s.ref.Perm
	if isIdentity(perm) {
		perm = nil
	}
	ht := &hooks.Tensor{Shape: toInts(shape), Data: data}
	if perm != nil {
		ht = transpose(ht, perm)
	}
	if !s.hook {
		if s.want {
			grads[s.site] = ht.Clone()
		}
		return nil
	}
	var arrived func(*hooks.Tensor)
	if s.want {
		arrived = func(t *hooks.Tensor) { grads[s.site] = t.Clone() }
	}
	shared := !s.write && perm == nil
	out, err := x.hs.CallBwd(s.site, ht, shared, arrived)
	if err != nil {
		return err
	}
	if !s.write {
		return nil
	}
	if perm != nil {
		out = transpose(out, inversePerm(perm))
	} else if sameBacking(out.Data, data) {
		return nil // edited in place
	}
	nv, err := f32Value(toInt64s(out.Shape), out.Data)
	if err != nil {
		return fmt.Errorf("gradient at %s: %w", s.site, err)
	}
	x.set(s.grad, nv)
	return nil
}
