package sae

import (
	"errors"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Errors of binding an SAE to a model's sites.
var (
	ErrSiteOrder    = errors.New("a transcoder's output site precedes its input site")
	ErrSiteConflict = errors.New("the site given disagrees with the SAE's own")
	ErrNoResolver   = errors.New("the model cannot resolve the SAE's site names")
)

// SiteMap is the affine map between a model's value at a site (TDB's
// coordinates) and what a foreign name for that site holds (e.g. a
// TransformerLens hook after TL's weight processing), row by row over
// rows of the SAE's input width:
//
//	foreign = Scale · (P·x − Shift)     P: centring over the row when Center
//	x'      = y/Scale + Shift + (x − P·x)
//
// where x' is what a foreign value y writes back in place of x: the part of
// x that the foreign coordinates do not see (its mean, when centred) is
// kept. The zero SiteMap (and nil) is the identity.
type SiteMap struct {
	Center bool      // subtract the mean over each row
	Shift  []float32 // subtracted after centring; its length is the row width, or 0
	Scale  float32   // multiplied last; 0 means 1
}

// Identity reports whether the map changes nothing.
func (m *SiteMap) Identity() bool {
	return m == nil || (!m.Center && len(m.Shift) == 0 && (m.Scale == 0 || m.Scale == 1))
}

func (m *SiteMap) scale() float32 {
	if m == nil || m.Scale == 0 {
		return 1
	}
	return m.Scale
}

func (m *SiteMap) check(t *hooks.Tensor, width int) error {
	if width <= 0 || len(t.Data)%width != 0 {
		return fmt.Errorf("%w: %d values are not rows of %d", ErrShape, len(t.Data), width)
	}
	if m != nil && len(m.Shift) != 0 && len(m.Shift) != width {
		return fmt.Errorf("%w: shift of %d values for rows of %d", ErrShape, len(m.Shift), width)
	}
	return nil
}

func rowMean(row []float32) float32 {
	var s float64
	for _, v := range row {
		s += float64(v)
	}
	return float32(s / float64(len(row)))
}

// To maps x into the foreign coordinates (a new tensor of x's shape).
func (m *SiteMap) To(x *hooks.Tensor, width int) (*hooks.Tensor, error) {
	if err := m.check(x, width); err != nil {
		return nil, err
	}
	out := x.Clone()
	if m.Identity() {
		return out, nil
	}
	k := m.scale()
	for r := 0; r < len(out.Data); r += width {
		row := out.Data[r : r+width]
		var mu float32
		if m.Center {
			mu = rowMean(x.Data[r : r+width])
		}
		for i := range row {
			v := row[i] - mu
			if len(m.Shift) > 0 {
				v -= m.Shift[i]
			}
			row[i] = v * k
		}
	}
	return out, nil
}

// From maps a foreign value y back in place of x (a new tensor).
func (m *SiteMap) From(y, x *hooks.Tensor, width int) (*hooks.Tensor, error) {
	if err := m.check(y, width); err != nil {
		return nil, err
	}
	if len(x.Data) != len(y.Data) {
		return nil, fmt.Errorf("%w: %d values written back over %d", ErrShape, len(y.Data), len(x.Data))
	}
	out := &hooks.Tensor{Shape: append([]int(nil), x.Shape...), Data: append([]float32(nil), y.Data...)}
	if m.Identity() {
		return out, nil
	}
	k := m.scale()
	for r := 0; r < len(out.Data); r += width {
		row := out.Data[r : r+width]
		var mu float32
		if m.Center {
			mu = rowMean(x.Data[r : r+width])
		}
		for i := range row {
			v := row[i] / k
			if len(m.Shift) > 0 {
				v += m.Shift[i]
			}
			row[i] = v + mu
		}
	}
	return out, nil
}

// GradFrom is the gradient with respect to the foreign value y, given g =
// d(loss)/d(x') [rows of width]: g/Scale.
func (m *SiteMap) GradFrom(g *hooks.Tensor) *hooks.Tensor {
	out := g.Clone()
	if k := m.scale(); k != 1 {
		for i := range out.Data {
			out.Data[i] /= k
		}
	}
	return out
}

// GradTo is the gradient with respect to x given gf = d(loss)/d(To(x)) and
// g = d(loss)/d(x') (the mean of x that From keeps): Scale·P·gf + (I−P)·g.
func (m *SiteMap) GradTo(gf, g *hooks.Tensor, width int) *hooks.Tensor {
	out := gf.Clone()
	k := m.scale()
	for r := 0; r < len(out.Data); r += width {
		row := out.Data[r : r+width]
		var mu, gmu float32
		if m != nil && m.Center {
			mu = rowMean(row)
			if g != nil {
				gmu = rowMean(g.Data[r : r+width])
			}
		}
		for i := range row {
			row[i] = (row[i]-mu)*k + gmu
		}
	}
	return out
}

// A Resolver maps a foreign site name (TransformerLens's hook names, with
// the weight processing the SAE's training model had) onto the model: the
// TDB site and the map from its values into the name's coordinates.
// Architecture packages provide one for their models.
type Resolver func(name string, p Processing) (hooks.Site, *SiteMap, error)

// Binding is where a spliced SAE reads and writes in a model.
type Binding struct {
	In, Out       hooks.Site // Out == In but for transcoders
	InMap, OutMap *SiteMap
	Layer         int // the layer of its sae.* points
}

// Bind resolves the SAE's own site names (from its cfg.json) with the
// model's resolver. A transcoder whose output site comes before its input
// in the forward pass is an error.
func Bind(ae *Autoencoder, resolve Resolver, nLayers int) (Binding, error) {
	site := ae.Site()
	if site == nil || site.HookName == "" {
		return Binding{}, fmt.Errorf("%w: %s names no site (give POINT@LAYER)", ErrBadConfig, ae.Source)
	}
	if resolve == nil {
		return Binding{}, fmt.Errorf("%w: %s", ErrNoResolver, site.HookName)
	}
	in, inMap, err := resolve(site.HookName, site.Processing)
	if err != nil {
		return Binding{}, fmt.Errorf("sae site %s: %w", site.HookName, err)
	}
	b := Binding{In: in, Out: in, InMap: inMap, OutMap: inMap, Layer: site.Layer}
	if b.Layer < 0 {
		b.Layer = max(in.Layer, 0)
	}
	if ae.IsTranscoder() {
		out, outMap, err := resolve(site.HookNameOut, site.Processing)
		if err != nil {
			return Binding{}, fmt.Errorf("sae output site %s: %w", site.HookNameOut, err)
		}
		if out.Order(nLayers) <= in.Order(nLayers) {
			return Binding{}, fmt.Errorf("%w: %s (%s) is not after %s (%s)", ErrSiteOrder, site.HookNameOut, out, site.HookName, in)
		}
		b.Out, b.OutMap = out, outMap
	}
	return b, nil
}

// PlainBinding is the binding of an SAE spliced at a TDB site with no
// map (TDB's own SAEs, v5 SAEs, or any SAE given POINT@LAYER).
func PlainBinding(at hooks.Site) Binding {
	return Binding{In: at, Out: at, Layer: max(at.Layer, 0)}
}

// Coords is the map as hooks.Coords over a site's values: rows are the
// shift's width, or the last axis when there is no shift.
func (m *SiteMap) Coords() hooks.Coords { return siteCoords{m} }

type siteCoords struct{ m *SiteMap }

func (c siteCoords) width(x *hooks.Tensor) int {
	if c.m != nil && len(c.m.Shift) > 0 {
		return len(c.m.Shift)
	}
	if len(x.Shape) == 0 {
		return 1
	}
	return x.Shape[len(x.Shape)-1]
}

func (c siteCoords) To(x *hooks.Tensor) (*hooks.Tensor, error) { return c.m.To(x, c.width(x)) }

func (c siteCoords) From(y, x *hooks.Tensor) (*hooks.Tensor, error) {
	return c.m.From(y, x, c.width(x))
}

// Input is what the SAE reads from x, the model's value at b.In: its
// trailing axes as one of the SAE's input width, in its coordinates.
func (b Binding) Input(ae *Autoencoder, x *hooks.Tensor) (*hooks.Tensor, error) {
	xr, err := asRows(x, ae.NInputs)
	if err != nil {
		return nil, err
	}
	return b.InMap.To(xr, ae.NInputs)
}
