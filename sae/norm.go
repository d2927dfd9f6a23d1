package sae

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// ErrNeedsInput is returned by Decode and DecodeVJP for an autoencoder
// whose output depends on its input too (a normalised SAE's
// de-normalisation, a skip-transcoder's skip term): use DecodeFrom and
// DecodeVJPAt.
var ErrNeedsInput = errors.New("decoding needs the input as well")

// layerNormEps is SAELens's and upstream sparse_autoencoder's LN epsilon,
// added to the (unbiased) standard deviation.
const layerNormEps = 1e-5

// Family is the autoencoder's family: "" for TDB's own, else one of the
// Family* names.
func (a *Autoencoder) Family() string { return a.man.Family }

// Norm is its input normalisation (NormNone, NormConstantNormRescale,
// NormLayerNorm).
func (a *Autoencoder) Norm() string {
	if a.man.Norm == "" {
		return NormNone
	}
	return a.man.Norm
}

// Site is where its config says it reads (nil when it says nothing, as
// .pt state dicts).
func (a *Autoencoder) Site() *SiteSpec {
	if a.man.Site == nil {
		return nil
	}
	s := *a.man.Site
	return &s
}

// NOutputs is the width of its output: NInputs, or a transcoder's d_out.
func (a *Autoencoder) NOutputs() int {
	if a.man.NOutputs > 0 {
		return a.man.NOutputs
	}
	return a.NInputs
}

// IsTranscoder reports whether it writes to another site than it reads.
func (a *Autoencoder) IsTranscoder() bool {
	switch a.man.Family {
	case FamilyTranscoder, FamilySkipTranscoder, FamilyJumpReLUTranscoder:
		return true
	}
	return false
}

func (a *Autoencoder) hasSkip() bool { _, ok := a.man.Tensors[keySkip]; return ok }

// denormalises reports whether decode maps its output back through the
// input's statistics (SAEs with a normalisation; transcoders never).
func (a *Autoencoder) denormalises() bool { return a.man.Norm != "" && !a.IsTranscoder() }

// needsInput reports whether decoding needs the input.
func (a *Autoencoder) needsInput() bool { return a.denormalises() || a.hasSkip() }

// rowStats are one row's normalisation statistics: layer_norm's mean and
// standard deviation, or constant_norm_rescale's norm.
type rowStats struct {
	mu, s float64 // layer_norm: mean, unbiased std; constant: 0, ‖x‖
}

func (a *Autoencoder) stats(x *hooks.Tensor) []rowStats {
	n := a.NInputs
	rows := len(x.Data) / n
	st := make([]rowStats, rows)
	for r := range st {
		row := x.Data[r*n : (r+1)*n]
		switch a.man.Norm {
		case NormLayerNorm:
			var sum float64
			for _, v := range row {
				sum += float64(v)
			}
			mu := sum / float64(n)
			var ss float64
			for _, v := range row {
				d := float64(v) - mu
				ss += d * d
			}
			st[r] = rowStats{mu: mu, s: math.Sqrt(ss / float64(max(n-1, 1)))}
		case NormConstantNormRescale:
			var ss float64
			for _, v := range row {
				ss += float64(v) * float64(v)
			}
			st[r] = rowStats{s: math.Sqrt(ss)}
		}
	}
	return st
}

// normIn is SAELens's run_time_activation_norm_fn_in (and upstream's LN).
func (a *Autoencoder) normIn(x *hooks.Tensor) *hooks.Tensor {
	if a.man.Norm == "" {
		return x
	}
	n := a.NInputs
	out := &hooks.Tensor{Shape: append([]int(nil), x.Shape...), Data: make([]float32, len(x.Data))}
	for r, st := range a.stats(x) {
		in, o := x.Data[r*n:(r+1)*n], out.Data[r*n:(r+1)*n]
		switch a.man.Norm {
		case NormLayerNorm:
			d := st.s + layerNormEps
			for i, v := range in {
				o[i] = float32((float64(v) - st.mu) / d)
			}
		case NormConstantNormRescale:
			c := math.Sqrt(float64(n)) / st.s
			for i, v := range in {
				o[i] = float32(float64(v) * c)
			}
		}
	}
	return out
}

// outScale is d(output)/d(r) of the de-normalisation per row: std for
// layer_norm, 1/c = ‖x‖/√n for constant_norm_rescale.
func (a *Autoencoder) outScale(st rowStats) float64 {
	if a.man.Norm == NormLayerNorm {
		return st.s
	}
	return st.s / math.Sqrt(float64(a.NInputs))
}

// denorm maps r (rows of the output width) back with x's statistics, in
// place: y = r·std + mean, or y = r/c.
func (a *Autoencoder) denorm(r *hooks.Tensor, st []rowStats) {
	m := a.NOutputs()
	for i, s := range st {
		k, add := a.outScale(s), s.mu
		row := r.Data[i*m : (i+1)*m]
		for j, v := range row {
			row[j] = float32(float64(v)*k + add)
		}
	}
}

// DecodeFrom reconstructs from latents z [..., N] for the input x [..., n]
// they were encoded from: decode(z), de-normalised with x's statistics,
// plus a skip-transcoder's skip term x · W_skipᵀ. For autoencoders without
// either it equals Decode(z).
func (a *Autoencoder) DecodeFrom(ctx context.Context, z, x *hooks.Tensor) (*hooks.Tensor, error) {
	out, err := a.run(ctx, z, a.NLatents, inZ, outRecon, a.NOutputs(), nil)
	if err != nil {
		return nil, fmt.Errorf("sae decode: %w", err)
	}
	if !a.needsInput() {
		return out, nil
	}
	if err := a.checkRows(x, z); err != nil {
		return nil, fmt.Errorf("sae decode: %w", err)
	}
	if a.denormalises() {
		a.denorm(out, a.stats(x))
	}
	if a.hasSkip() {
		sk, err := a.run(ctx, x, a.NInputs, inXSkip, outSkip, a.NOutputs(), nil)
		if err != nil {
			return nil, fmt.Errorf("sae skip: %w", err)
		}
		for i, v := range sk.Data {
			out.Data[i] += v
		}
	}
	return out, nil
}

func (a *Autoencoder) checkRows(x, z *hooks.Tensor) error {
	if x == nil || len(x.Shape) == 0 || x.Shape[len(x.Shape)-1] != a.NInputs || len(x.Data) != x.Numel() ||
		len(x.Data)/a.NInputs != len(z.Data)/max(z.Shape[len(z.Shape)-1], 1) {
		return fmt.Errorf("%w: input %v does not match latents %v", ErrShape, shapeOf(x), shapeOf(z))
	}
	return nil
}

// DecodeVJPAt is DecodeVJP for autoencoders that de-normalise: g [..., m]
// (d(loss)/d(the reconstruction)) gives d(loss)/d(the latents) at x.
func (a *Autoencoder) DecodeVJPAt(ctx context.Context, x, g *hooks.Tensor) (*hooks.Tensor, error) {
	if !a.denormalises() {
		return a.decodeVJP(ctx, g)
	}
	if err := a.checkRows(x, g); err != nil {
		return nil, fmt.Errorf("sae decode vjp: %w", err)
	}
	m := a.NOutputs()
	gs := g.Clone()
	for i, s := range a.stats(x) {
		k := float32(a.outScale(s))
		row := gs.Data[i*m : (i+1)*m]
		for j := range row {
			row[j] *= k
		}
	}
	return a.decodeVJP(ctx, gs)
}

// InputVJP is d(DecodeFrom(z, x))/dx at fixed z, applied to g [..., m]:
// the de-normalisation's statistics and the skip term; zeros for
// autoencoders without either.
func (a *Autoencoder) InputVJP(ctx context.Context, x, z, g *hooks.Tensor) (*hooks.Tensor, error) {
	n, m := a.NInputs, a.NOutputs()
	gx := hooks.Zeros(x.Shape...)
	if a.hasSkip() {
		v, err := a.run(ctx, g, m, inGradRec, outVJPSkip, n, nil)
		if err != nil {
			return nil, fmt.Errorf("sae skip vjp: %w", err)
		}
		copy(gx.Data, v.Data)
	}
	if !a.denormalises() {
		return gx, nil
	}
	r, err := a.run(ctx, z, a.NLatents, inZ, outRecon, m, nil)
	if err != nil {
		return nil, fmt.Errorf("sae input vjp: %w", err)
	}
	for i, st := range a.stats(x) {
		xr, gr, rr, out := x.Data[i*n:(i+1)*n], g.Data[i*m:(i+1)*m], r.Data[i*m:(i+1)*m], gx.Data[i*n:(i+1)*n]
		var gDotR, gSum float64
		for j := range gr {
			gDotR += float64(gr[j]) * float64(rr[j])
			gSum += float64(gr[j])
		}
		switch a.man.Norm {
		case NormLayerNorm:
			// y = r·s + μ: ds/dx_k = (x_k − μ)/((n−1)s), dμ/dx_k = 1/n.
			for k, v := range xr {
				ds := 0.0
				if st.s > 0 {
					ds = (float64(v) - st.mu) / (float64(n-1) * st.s)
				}
				out[k] += float32(gDotR*ds + gSum/float64(n))
			}
		case NormConstantNormRescale:
			// y = r·‖x‖/√n.
			if st.s > 0 {
				for k, v := range xr {
					out[k] += float32(gDotR * float64(v) / (st.s * math.Sqrt(float64(n))))
				}
			}
		}
	}
	return gx, nil
}

// normInVJP maps d(loss)/d(normIn(x)) to d(loss)/dx, in place.
func (a *Autoencoder) normInVJP(x, g *hooks.Tensor) {
	if a.man.Norm == "" {
		return
	}
	n := a.NInputs
	for r, st := range a.stats(x) {
		xr, gr := x.Data[r*n:(r+1)*n], g.Data[r*n:(r+1)*n]
		switch a.man.Norm {
		case NormLayerNorm:
			// xn = u/d, u = x − μ, d = s + eps, ds/du_j = u_j/((n−1)s);
			// then through the centring u = x − μ.
			d := st.s + layerNormEps
			var gu float64
			for i, v := range xr {
				gu += float64(gr[i]) * (float64(v) - st.mu)
			}
			coef := 0.0
			if st.s > 0 {
				coef = gu / (d * d * float64(n-1) * st.s)
			}
			tmp := make([]float64, n)
			var mean float64
			for i, v := range xr {
				tmp[i] = float64(gr[i])/d - coef*(float64(v)-st.mu)
				mean += tmp[i]
			}
			mean /= float64(n)
			for i := range gr {
				gr[i] = float32(tmp[i] - mean)
			}
		case NormConstantNormRescale:
			// xn = x·√n/‖x‖.
			if st.s == 0 {
				continue
			}
			sq := math.Sqrt(float64(n))
			var gx float64
			for i, v := range xr {
				gx += float64(gr[i]) * float64(v)
			}
			for i, v := range xr {
				gr[i] = float32(sq/st.s*float64(gr[i]) - sq*float64(v)*gx/(st.s*st.s*st.s))
			}
		}
	}
}
