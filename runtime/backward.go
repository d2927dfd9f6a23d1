package runtime

import (
	"context"
	"errors"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
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

// Backward runs the forward pass with the request's hooks, computes the
// loss gradient at the root from the root's value, and runs the backward
// graph in reverse order of the hook sites: at each site with bwd hooks it
// calls them with the gradient there (the last registered first); a
// gradient a hook returns flows on. Forward values the backward graph needs
// are returned by the forward pass as extra outputs and dropped once the
// last backward segment reading them has run.
func (e *Engine) Backward(ctx context.Context, req BackwardRequest) (*BackwardResult, error) {
	if err := e.life.enter(); err != nil {
		return nil, err
	}
	defer e.life.leave()
	defer e.ws.dropTables() // as after a forward run: the rows its Gathers read
	hs := req.Hooks
	if hs == nil {
		hs = hooks.Snapshot()
	}
	defer hs.DoneWithScratch() // observers' copies serve later runs
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
	k := e.backwardKey(req, fwdUses, bwdUses)
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

	// The forward pass returns what the loss and the backward graph read;
	// those values stay in ONNX Runtime's memory until the backward pass is
	// over, which reads them without a copy.
	outs := e.forwardOutputs(p, req.Outputs)
	fres, _, releaseFwd, err := e.forwardValues(ctx, Request{Inputs: req.Inputs, Outputs: outs, Hooks: hs}, nil)
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
	x := newBwdExec(p, hs, res.Grads)
	defer x.release()
	ro, done, err := cancelOnDone(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	x.ro = ro

	seed, err := x.lossGradient(req, head, rootRef, fres[p.root], wantRoot, res)
	if err != nil {
		return nil, fmt.Errorf("loss at %s: %w", req.Root, err)
	}
	if p.seed == "" {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("backward: %w", cerr)
		}
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
	err = x.run(ctx)
	if cerr := ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("backward: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// lossGradient asks the loss for its gradient at the plan's root (graph
// layout): through the row head when there is one, else at the whole root
// value, which it returns in res.Root. rv is the root's forward value.
func (x *bwdExec) lossGradient(req BackwardRequest, head *rowHead, rootRef PointRef, rv *value, wantRoot bool, res *BackwardResult) (*hooks.Tensor, error) {
	rshape, rdata, ok := valueF32(rv)
	if !ok {
		return nil, fmt.Errorf("%w: root %s is not a float32 tensor", ErrSeed, req.Root)
	}
	view := &hooks.Tensor{Shape: toInts(rshape), Data: rdata} // valid while the forward values are
	if head != nil {
		seed, gRoot, err := x.runHead(head, view, req.RootRows, req.SeedRows, wantRoot)
		if err != nil {
			return nil, err
		}
		if wantRoot {
			res.Grads[req.Root] = gRoot
		}
		return seed, nil
	}
	res.Root = toRef(view.Clone(), rootRef.Perm)
	g, err := rootSeed(req, res.Root)
	if err != nil {
		return nil, err
	}
	return fromRef(g, rootRef.Perm), nil
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
