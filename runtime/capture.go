package runtime

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Capturing hands a run's hooked tensors to the caller without copying
// them: each captured site's value stays in ONNX Runtime's memory, where the
// segment that computed it left it, and the caller gets a hooks.Tensor whose
// Data views that memory. The Result owns the memory until Result.Close,
// which gives it back to ONNX Runtime's arena, so the next run of the same
// shape reuses the same blocks instead of allocating: a warm capture copies
// nothing and allocates no tensor memory in Go. Sites whose graph layout
// differs from the reference layout (PointRef.Perm) are transposed, which is
// one copy into Go; so are the caller's own input values. A view shows the
// value as the site's hooks left it; a writing hook at a later site of the
// same tensor that edits it in place shows through.

// withCaptured adds the captured sites to a run's uses (at least Read, so
// the plan exposes them), checking the model has each.
func (e *Engine) withCaptured(uses map[hooks.Site]hooks.Use, capture []hooks.Site) (map[hooks.Site]hooks.Use, error) {
	if len(capture) == 0 {
		return uses, nil
	}
	out := make(map[hooks.Site]hooks.Use, len(uses)+len(capture))
	for s, u := range uses {
		out[s] = u
	}
	for _, s := range capture {
		if _, ok := e.g.Points[s]; !ok {
			return nil, fmt.Errorf("%w: capture %s", ErrNoPoint, s)
		}
		if out[s] < hooks.Read {
			out[s] = hooks.Read
		}
	}
	return out, nil
}

// captured is what a run captured: views of the values it holds, and
// copies where a view could not be had.
type captured struct {
	tensors map[hooks.Site]*hooks.Tensor
	held    []*value // values the views read; released by Result.Close
	// inGo are the sites whose tensors are in memory Request.Alloc gave:
	// the caller's, left in place by Result.Close.
	inGo map[hooks.Site]bool
}

// captureSite records site i's value once its hooks ran: the value the
// pass continues from there (a writer's result where hooks wrote).
func (x *execution) captureSite(i int) error {
	s := x.p.sites[i]
	if !x.capture[s.site] {
		return nil
	}
	v := x.vals[s.ref.Tensor]
	if v == nil {
		return fmt.Errorf("capture %s: tensor %s was not computed", s.site, s.ref.Tensor)
	}
	if v.dev {
		return fmt.Errorf("capture %s: %w", s.site, errOnDevice)
	}
	perm := s.ref.Perm
	if isIdentity(perm) {
		perm = nil
	}
	switch {
	case perm != nil:
		x.caught.tensors[s.site] = hookTensor(v, perm) // a transposed copy
	case x.borrowed[v]:
		x.caught.tensors[s.site] = hookTensor(v, nil).Clone()
	default:
		x.caught.tensors[s.site] = hookTensor(v, nil)
		if x.pa != nil && x.pa.from[v] {
			x.caught.inGo[s.site] = true
		}
		if !x.held[v] {
			x.held[v] = true
			x.caught.held = append(x.caught.held, v)
		}
	}
	return nil
}

// takeCaptured hands the held values over to the caller: the execution no
// longer releases them.
func (x *execution) takeCaptured() *captured {
	if x.caught == nil {
		return nil
	}
	for _, v := range x.caught.held {
		x.detach(v)
	}
	c := x.caught
	x.caught = nil
	return c
}

func (c *captured) release() {
	if c == nil {
		return
	}
	releaseAll(c.held)
	c.held = nil
	for s, t := range c.tensors {
		if !c.inGo[s] {
			t.Data = nil
			delete(c.tensors, s)
		}
	}
}

// View returns the value's float32 tensor in place, without a copy: its Data
// views the value's memory, valid until Close. It fails for a value in GPU
// memory (use Tensor there) or of another element type.
func (v *Value) View() (*hooks.Tensor, error) {
	if v == nil || v.v == nil || v.v.v == nil {
		return nil, fmt.Errorf("view: closed value")
	}
	if v.v.dev {
		return nil, fmt.Errorf("view: %w", errOnDevice)
	}
	if v.v.elem != elemFloat {
		return nil, fmt.Errorf("view: value is not float32")
	}
	return hookTensor(v.v, nil), nil
}
