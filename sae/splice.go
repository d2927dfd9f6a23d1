package sae

import (
	"context"
	"errors"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Splice attaches an autoencoder to a forward pass at its input point (for
// the original's SAEs: mlp.post_act, resid.torso.delta_mlp or
// resid.torso.delta_attn) at one layer, as a fwd2 hook there, with the
// original's AutoencoderHooks semantics (docs/behaviour.md §3.1):
//
//  1. lat = encode(x)
//  2. the hooks at sae.latents@L run on lat (on a copy when addError)
//  3. rec = the hooks at sae.reconstruction@L run on decode(hooked lat)
//  4. with addError: err = the hooks at sae.error@L run on
//     x − decode(unhooked lat), and the point continues with rec + err, so a
//     splice without latent edits changes nothing and latent edits do;
//     without: the hooks at sae.error@L see x − rec for observation only
//     (what they return is dropped) and the point continues with rec: the
//     autoencoder replaces the activation.
//
// The sae.* hooks are ordinary registrations (Add or Observe with AtLayers)
// on any of the hook sets of the pass. Because the splice writes, the pass
// is cut at the input point. The original splices autoencoders before any
// other fwd2 hook of the point: register the splice first (or pass its hook
// set first to Forward) to keep that order. Remove undoes the registration.
//
// A backward pass differentiates through the splice as the original's
// autograd does (its VJP is registered with the splice, see hooks.VJPOf).
// With d = d(loss)/d(what the splice returned): the bwd hooks at
// sae.reconstruction@L get d (g_rec is what they return), those at
// sae.error@L too with addError (g_err), those at sae.latents@L get
// DecodeVJP(g_rec) (g_lat), and the gradient continues into the point as
//
//	addError:  g_err + encodeᵀ(g_lat − decodeᵀ(g_err))   (d itself when no hook edits a gradient)
//	otherwise: encodeᵀ(g_lat)
//
// where encodeᵀ and decodeᵀ are EncodeVJP at the point's input and
// DecodeVJP. Hooks that edit the latents, reconstruction or error in the
// forward pass count as the identity there, as every Go writer does.
func Splice(h *hooks.Hooks, ae *Autoencoder, at hooks.Site, addError bool) (remove func()) {
	return SpliceBound(h, ae, PlainBinding(at), addError)
}

// SpliceBound is Splice at a Binding: the SAE reads b.In mapped by b.InMap
// into its own coordinates, its sae.* points (in those coordinates) are at
// layer b.Layer, and what it returns is mapped back into the model's. A
// transcoder (b.Out after b.In) reads at b.In and replaces the value at
// b.Out with its output, plus with addError the unhooked error
// out − transcoder(in); the gradient reaching b.Out flows into b.In through
// the transcoder as well.
func SpliceBound(h *hooks.Hooks, ae *Autoencoder, b Binding, addError bool) (remove func()) {
	s := &splice{ae: ae, addError: addError, b: b}
	if b.Out == b.In {
		rmFwd := h.Add(b.In.Point, s.hook, at(b.In, hooks.InStage(hooks.Fwd2))...)
		rmBwd := h.Add(b.In.Point, s.vjp, at(b.In, hooks.InStage(hooks.Bwd), hooks.VJPOf(hooks.Fwd2))...)
		return func() { rmFwd(); rmBwd() }
	}
	rmIn := h.Observe(b.In.Point, s.read, at(b.In, hooks.InStage(hooks.Fwd2))...)
	rmInBwd := h.Add(b.In.Point, s.inGrad, at(b.In, hooks.InStage(hooks.Bwd))...)
	rmOut := h.Add(b.Out.Point, s.hook, at(b.Out, hooks.InStage(hooks.Fwd2))...)
	rmOutBwd := h.Add(b.Out.Point, s.vjp, at(b.Out, hooks.InStage(hooks.Bwd), hooks.VJPOf(hooks.Fwd2))...)
	return func() { rmIn(); rmInBwd(); rmOut(); rmOutBwd() }
}

// at restricts a registration to a site's layer (once points have none)
// and adds the other options.
func at(s hooks.Site, opts ...hooks.Option) []hooks.Option {
	if s.Point.PerLayer() {
		opts = append(opts, hooks.AtLayers(s.Layer))
	}
	return opts
}

type splice struct {
	ae       *Autoencoder
	addError bool
	b        Binding
}

// Stash keys of a splice's forward values.
type (
	spliceInput   struct{ s *splice } // the SAE-coordinate input
	spliceLatents struct{ s *splice } // hooked and clean latents
	spliceGradIn  struct{ s *splice } // a transcoder's gradient for its input site
)

type latentPair struct{ hooked, clean *hooks.Tensor }

// asRows reshapes t's trailing axes into one of width n (hook_z's heads):
// [B,T,H,dh] with n = H·dh gives [B,T,n].
func asRows(t *hooks.Tensor, n int) (*hooks.Tensor, error) {
	size := 1
	for k := len(t.Shape) - 1; k >= 0; k-- {
		size *= t.Shape[k]
		if size == n {
			shape := append(append([]int(nil), t.Shape[:k]...), n)
			return &hooks.Tensor{Shape: shape, Data: t.Data}, nil
		}
		if size > n {
			break
		}
	}
	return nil, fmt.Errorf("sae splice: %w: a value of shape %v has no trailing axes of width %d", ErrShape, t.Shape, n)
}

// read keeps a transcoder's input, in its coordinates.
func (s *splice) read(hc *hooks.Context, x *hooks.Tensor) error {
	if s.ae == nil {
		return ErrNoAutoencoder
	}
	xr, err := asRows(x, s.ae.NInputs)
	if err != nil {
		return err
	}
	xs, err := s.b.InMap.To(xr, s.ae.NInputs)
	if err != nil {
		return err
	}
	hc.Set().Stash(spliceInput{s}, xs)
	return nil
}

func (s *splice) site(p hooks.Point) hooks.Site { return hooks.Site{Point: p, Layer: s.b.Layer} }

func (s *splice) hook(hc *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
	if s.ae == nil {
		return nil, ErrNoAutoencoder
	}
	ctx := context.Background()
	set := hc.Set()
	n, m := s.ae.NInputs, s.ae.NOutputs()
	xo, err := asRows(x, m)
	if err != nil {
		return nil, err
	}
	// xs is the SAE's input, xt the value it stands in for (the same for
	// SAEs), both in the SAE's coordinates.
	xt, err := s.b.OutMap.To(xo, m)
	if err != nil {
		return nil, err
	}
	xs := xt
	if s.b.Out != s.b.In {
		v, ok := set.Stashed(spliceInput{s})
		if !ok {
			return nil, fmt.Errorf("sae splice: the transcoder's input %s was not read before %s", s.b.In, s.b.Out)
		}
		xs = v.(*hooks.Tensor)
	} else {
		set.Stash(spliceInput{s}, xs)
		if n != m {
			return nil, fmt.Errorf("sae splice: %w: %d inputs, %d outputs", ErrShape, n, m)
		}
	}

	lat, err := s.ae.Encode(ctx, xs)
	if err != nil {
		return nil, err
	}
	var clean *hooks.Tensor // the unhooked latents, for the error term
	if s.addError {
		clean = lat
		lat = lat.Clone()
	}
	if lat, err = set.Call(s.site(hooks.SAELatents), lat, true); err != nil {
		return nil, err
	}
	set.Stash(spliceLatents{s}, latentPair{lat, clean})
	dec, err := s.ae.DecodeFrom(ctx, lat, xs)
	if err != nil {
		return nil, err
	}
	var errT *hooks.Tensor
	if s.addError {
		// decode(clean) is dec when the latent hooks changed nothing: skip
		// the second decode. Take it before the reconstruction hooks, which
		// may edit dec in place.
		cleanDec := dec
		if !sameValues(lat.Data, clean.Data) {
			if cleanDec, err = s.ae.DecodeFrom(ctx, clean, xs); err != nil {
				return nil, err
			}
		}
		errT = difference(xt, cleanDec)
	}
	rec, err := set.Call(s.site(hooks.SAEReconstruction), dec, true)
	if err != nil {
		return nil, err
	}
	out := rec
	if !s.addError {
		// Observation only: what the error hooks return is dropped.
		if _, err := set.Call(s.site(hooks.SAEError), difference(xt, rec), false); err != nil {
			return nil, err
		}
	} else {
		if errT, err = set.Call(s.site(hooks.SAEError), errT, true); err != nil {
			return nil, err
		}
		out = rec.Clone()
		for i := range out.Data {
			out.Data[i] += errT.Data[i]
		}
	}
	back, err := s.b.OutMap.From(out, xo, m)
	if err != nil {
		return nil, err
	}
	copy(x.Data, back.Data)
	return x, nil
}

// vjp passes the gradient back through the splice (see Splice).
func (s *splice) vjp(hc *hooks.Context, d *hooks.Tensor) (*hooks.Tensor, error) {
	if s.ae == nil {
		return nil, ErrNoAutoencoder
	}
	ctx := context.Background()
	set := hc.Set()
	n, m := s.ae.NInputs, s.ae.NOutputs()
	saved, ok := set.Stashed(spliceInput{s})
	lats, ok2 := set.Stashed(spliceLatents{s})
	if !ok || !ok2 {
		return nil, errors.New("sae splice: no forward input saved for the backward pass")
	}
	xs, lp := saved.(*hooks.Tensor), lats.(latentPair)
	dr, err := asRows(d, m)
	if err != nil {
		return nil, err
	}
	gy := s.b.OutMap.GradFrom(dr) // d(loss)/d(the SAE-coordinate output)

	gRec, err := set.CallBwd(s.site(hooks.SAEReconstruction), gy.Clone(), false, nil)
	if err != nil {
		return nil, err
	}
	gLat, err := s.ae.DecodeVJPAt(ctx, xs, gRec)
	if err != nil {
		return nil, err
	}
	if gLat, err = set.CallBwd(s.site(hooks.SAELatents), gLat, false, nil); err != nil {
		return nil, err
	}
	// gxs: d(loss)/d(the SAE's input); gxt: d(loss)/d(the value it stands
	// in for, through the error term).
	var gxs, gxt *hooks.Tensor
	if !s.addError {
		if gxs, err = s.ae.EncodeVJP(ctx, xs, gLat); err != nil {
			return nil, err
		}
		if s.ae.needsInput() {
			in, err := s.ae.InputVJP(ctx, xs, lp.hooked, gRec)
			if err != nil {
				return nil, err
			}
			addTo(gxs, in)
		}
		gxt = hooks.Zeros(dr.Shape...)
	} else {
		gErr, err := set.CallBwd(s.site(hooks.SAEError), gy.Clone(), false, nil)
		if err != nil {
			return nil, err
		}
		// The error term xt − decode(encode(xs)) sends g_err through the
		// identity and back through decode and encode with a minus sign.
		back, err := s.ae.DecodeVJPAt(ctx, xs, gErr)
		if err != nil {
			return nil, err
		}
		for i := range gLat.Data {
			gLat.Data[i] -= back.Data[i]
		}
		if gxs, err = s.ae.EncodeVJP(ctx, xs, gLat); err != nil {
			return nil, err
		}
		if s.ae.needsInput() && !(sameValues(lp.hooked.Data, lp.clean.Data) && sameValues(gRec.Data, gErr.Data)) {
			in, err := s.ae.InputVJP(ctx, xs, lp.hooked, gRec)
			if err != nil {
				return nil, err
			}
			addTo(gxs, in)
			if in, err = s.ae.InputVJP(ctx, xs, lp.clean, gErr); err != nil {
				return nil, err
			}
			for i := range gxs.Data {
				gxs.Data[i] -= in.Data[i]
			}
		}
		gxt = gErr
	}
	if s.b.Out == s.b.In {
		addTo(gxs, gxt)
		g := s.b.InMap.GradTo(gxs, dr, n)
		return &hooks.Tensor{Shape: append([]int(nil), d.Shape...), Data: g.Data}, nil
	}
	// A transcoder: the input's share waits for the backward pass to reach
	// the input site; the output site's own value only enters through the
	// error term.
	set.Stash(spliceGradIn{s}, gxs)
	g := s.b.OutMap.GradTo(gxt, dr, m)
	return &hooks.Tensor{Shape: append([]int(nil), d.Shape...), Data: g.Data}, nil
}

// inGrad adds a transcoder's share of the gradient at its input site.
func (s *splice) inGrad(hc *hooks.Context, g *hooks.Tensor) (*hooks.Tensor, error) {
	v, ok := hc.Set().Stashed(spliceGradIn{s})
	if !ok {
		return g, nil
	}
	gxs := v.(*hooks.Tensor)
	gr, err := asRows(g, s.ae.NInputs)
	if err != nil {
		return nil, err
	}
	add := s.b.InMap.GradTo(gxs, nil, s.ae.NInputs)
	if len(add.Data) != len(gr.Data) {
		return nil, fmt.Errorf("sae splice: %w: gradient of %d values at %s, %d from the transcoder", ErrShape, len(gr.Data), s.b.In, len(add.Data))
	}
	for i := range g.Data {
		g.Data[i] += add.Data[i]
	}
	return g, nil
}

func addTo(dst, src *hooks.Tensor) {
	for i := range dst.Data {
		dst.Data[i] += src.Data[i]
	}
}

// ErrNoAutoencoder is returned by a splice made with a nil autoencoder.
var ErrNoAutoencoder = errors.New("no autoencoder")

func sameValues(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func difference(x, y *hooks.Tensor) *hooks.Tensor {
	out := &hooks.Tensor{Shape: append([]int(nil), x.Shape...), Data: make([]float32, len(x.Data))}
	for i := range out.Data {
		out.Data[i] = x.Data[i] - y.Data[i]
	}
	return out
}
