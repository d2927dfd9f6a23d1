package sae

import (
	"context"
	"errors"

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
	s := &splice{ae: ae, addError: addError}
	rmFwd := h.Add(at.Point, s.hook, hooks.AtLayers(at.Layer), hooks.InStage(hooks.Fwd2))
	rmBwd := h.Add(at.Point, s.vjp, hooks.AtLayers(at.Layer), hooks.InStage(hooks.Bwd), hooks.VJPOf(hooks.Fwd2))
	return func() { rmFwd(); rmBwd() }
}

type splice struct {
	ae       *Autoencoder
	addError bool
}

// spliceInput is the stash key of the input a splice saw at a layer.
type spliceInput struct {
	s     *splice
	layer int
}

// vjp passes the gradient back through the splice (see Splice).
func (s *splice) vjp(hc *hooks.Context, d *hooks.Tensor) (*hooks.Tensor, error) {
	if s.ae == nil {
		return nil, ErrNoAutoencoder
	}
	ctx := context.Background()
	set, layer := hc.Set(), hc.Layer()
	site := func(p hooks.Point) hooks.Site { return hooks.Site{Point: p, Layer: layer} }
	saved, ok := set.Stashed(spliceInput{s, layer})
	if !ok {
		return nil, errors.New("sae splice: no forward input saved for the backward pass")
	}
	x := saved.(*hooks.Tensor)

	gRec, err := set.CallBwd(site(hooks.SAEReconstruction), d.Clone(), false, nil)
	if err != nil {
		return nil, err
	}
	gLat, err := s.ae.DecodeVJP(ctx, gRec)
	if err != nil {
		return nil, err
	}
	if gLat, err = set.CallBwd(site(hooks.SAELatents), gLat, false, nil); err != nil {
		return nil, err
	}
	if !s.addError {
		return s.ae.EncodeVJP(ctx, x, gLat)
	}
	gErr, err := set.CallBwd(site(hooks.SAEError), d.Clone(), false, nil)
	if err != nil {
		return nil, err
	}
	// The error term x − decode(encode(x)) sends g_err through the identity
	// and back through decode and encode with a minus sign.
	back, err := s.ae.DecodeVJP(ctx, gErr)
	if err != nil {
		return nil, err
	}
	for i := range gLat.Data {
		gLat.Data[i] -= back.Data[i]
	}
	gx, err := s.ae.EncodeVJP(ctx, x, gLat)
	if err != nil {
		return nil, err
	}
	for i := range gx.Data {
		gx.Data[i] += gErr.Data[i]
	}
	return gx, nil
}

// ErrNoAutoencoder is returned by a splice made with a nil autoencoder.
var ErrNoAutoencoder = errors.New("no autoencoder")

func (s *splice) hook(hc *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
	if s.ae == nil {
		return nil, ErrNoAutoencoder
	}
	ctx := context.Background()
	set, layer := hc.Set(), hc.Layer()
	site := func(p hooks.Point) hooks.Site { return hooks.Site{Point: p, Layer: layer} }
	// The VJP needs the input; the splice overwrites x below.
	set.Stash(spliceInput{s, layer}, x.Clone())

	lat, err := s.ae.Encode(ctx, x)
	if err != nil {
		return nil, err
	}
	var clean *hooks.Tensor // the unhooked latents, for the error term
	if s.addError {
		clean = lat
		lat = lat.Clone()
	}
	if lat, err = set.Call(site(hooks.SAELatents), lat, true); err != nil {
		return nil, err
	}
	dec, err := s.ae.Decode(ctx, lat)
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
			if cleanDec, err = s.ae.Decode(ctx, clean); err != nil {
				return nil, err
			}
		}
		errT = difference(x, cleanDec)
	}
	rec, err := set.Call(site(hooks.SAEReconstruction), dec, true)
	if err != nil {
		return nil, err
	}
	if !s.addError {
		// Observation only: what the error hooks return is dropped.
		if _, err := set.Call(site(hooks.SAEError), difference(x, rec), false); err != nil {
			return nil, err
		}
		copy(x.Data, rec.Data)
		return x, nil
	}
	if errT, err = set.Call(site(hooks.SAEError), errT, true); err != nil {
		return nil, err
	}
	for i := range x.Data {
		x.Data[i] = rec.Data[i] + errT.Data[i]
	}
	return x, nil
}

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
