package hooks

import (
	"fmt"
	"sort"
)

// BwdUses resolves the gradient (bwd) registrations against a model with
// nLayers layers: each site they touch, Write where a hook may replace the
// gradient, Read where only observers look at it. As in Uses, the SAE points
// are left out: they are not sites of the model's graph.
func (s *Set) BwdUses(nLayers int) (map[Site]Use, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	uses := map[Site]Use{}
	for _, e := range s.entries {
		if e.stage != Bwd || e.point.IsSAE() {
			continue
		}
		use := Read
		if e.fn != nil {
			use = Write
		}
		for _, site := range e.sites(nLayers) {
			if uses[site] < use {
				uses[site] = use
			}
		}
	}
	return uses, nil
}

// HasBwd reports whether the snapshot holds gradient hooks.
func (s *Set) HasBwd() bool {
	for _, e := range s.entries {
		if e.stage == Bwd {
			return true
		}
	}
	return false
}

// SitesInBackwardOrder sorts sites in the order a backward pass reaches
// them: the reverse of the forward call order.
func SitesInBackwardOrder(uses map[Site]Use, nLayers int) []Site {
	out := SitesInOrder(uses, nLayers)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Order(nLayers) > out[j].Order(nLayers) })
	return out
}

// vjpKey is the bound value that marks a bwd hook as the vector-Jacobian
// product of a forward writer.
const vjpKey = "hooks.vjp-of"

// VJPOf marks a gradient hook (registered with InStage(Bwd) and Add) as the
// vector-Jacobian product of a hook that writes at the same point in stage
// Fwd or Fwd2: it gets d(loss)/d(what that stage returned) and returns
// d(loss)/d(what that stage received). A backward pass treats a writing
// forward hook as the identity unless it has one; this is how a Go splice
// (an autoencoder at fwd2) passes the gradient through its own Jacobian. At a
// point, the backward pass runs the fwd2 VJPs first, then the ordinary
// gradient hooks (which thus see the gradient with respect to the value
// entering fwd2, as in the original), then the fwd VJPs; each group last
// registered first. The VJP keeps whatever forward values it needs from the
// forward call of its hook.
func VJPOf(stage Stage) Option {
	return func(e *entry) {
		if stage != Fwd && stage != Fwd2 {
			e.err = fmt.Errorf("%w: VJPOf(%s): only fwd and fwd2 hooks have one", ErrBadOption, stage)
			return
		}
		Bind(vjpKey, stage)(e)
	}
}

// vjpStage says which stage a bwd entry is the VJP of (Bwd for an ordinary
// gradient hook).
func (e *entry) vjpStage() Stage {
	if st, ok := e.vals[vjpKey].(Stage); ok {
		return st
	}
	return Bwd
}

// CallBwd runs the gradient hooks at a site on grad, d(loss)/d(value at the
// site as the forward pass left it): first the VJPs of fwd2 writers, then
// the ordinary bwd hooks, then the VJPs of fwd writers (see VJPOf), each
// group in the original's backward order, the last registered first. A
// writer returns the gradient to continue with (replace, ablate); what the
// last one returns flows on to the rest of the backward pass. arrived, when
// not nil, is called with the gradient the ordinary bwd hooks receive.
// shared says whether grad is also what the pass continues from without
// going through the writers (observers then get a copy). Errors name the
// site.
func (s *Set) CallBwd(site Site, grad *Tensor, shared bool, arrived func(*Tensor)) (*Tensor, error) {
	t := grad
	var buf [8]int
	want := append(buf[:0], grad.Shape...)
	for _, group := range []Stage{Fwd2, Bwd, Fwd} {
		if group == Bwd && arrived != nil {
			arrived(t)
		}
		for i := len(s.entries) - 1; i >= 0; i-- {
			e := s.entries[i]
			if e.stage != Bwd || e.vjpStage() != group || !e.matches(site) {
				continue
			}
			ctx := &Context{Site: site, Stage: Bwd, vals: e.vals, set: s}
			var err error
			t, shared, err = s.callEntry(e, ctx, t, shared, want)
			if err != nil {
				return nil, fmt.Errorf("%s hook at %s: %w", Bwd, describe(site), err)
			}
		}
	}
	return t, nil
}
