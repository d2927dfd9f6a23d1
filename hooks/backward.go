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

// CallBwd runs the gradient hooks at a site on grad, d(loss)/d(value at the
// site), in the original's backward order: the last registered first. A
// writer returns the gradient to continue with (replace, ablate); what the
// last one returns flows on to the rest of the backward pass. shared says
// whether grad is also what the pass continues from without going through
// the writers (observers then get a copy). Errors name the site.
func (s *Set) CallBwd(site Site, grad *Tensor, shared bool) (*Tensor, error) {
	t := grad
	for i := len(s.entries) - 1; i >= 0; i-- {
		e := s.entries[i]
		if e.stage != Bwd || !e.matches(site) {
			continue
		}
		ctx := &Context{Site: site, Stage: Bwd, vals: e.vals}
		var err error
		if e.fn != nil {
			var out *Tensor
			out, err = callFunc(e.fn, ctx, t)
			if err == nil {
				if out == nil || !t.SameShape(out) || len(out.Data) != out.Numel() {
					got := "nil"
					if out != nil {
						got = fmt.Sprintf("%v with %d values", out.Shape, len(out.Data))
					}
					err = fmt.Errorf("%w: got %s, want %v", ErrHookShape, got, t.Shape)
				} else {
					t = out
					shared = false
				}
			}
		} else {
			view := t
			if shared {
				view = t.Clone()
			}
			err = callObserver(e.obs, ctx, view)
		}
		if err != nil {
			return nil, fmt.Errorf("%s hook at %s: %w", Bwd, describe(site), err)
		}
	}
	return t, nil
}
