package hooks

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Edit is one intervention given in the CLI's form: a site, trailing indices
// and what to do there.
type Edit struct {
	Site  Site
	Index []int     // indices on the axes after batch and token; missing ones mean all
	Kind  EditKind  // Ablate, SetTo or Add
	Value float32   // for Set
	Vec   []float32 // for Add: the point's trailing axes
	// VecShape, when set, is Vec's shape: it must equal the point's
	// trailing axes (a [64] vector does not fit [4,16] though it has as many
	// values).
	VecShape []int
	// Coords, when set, are the coordinates the edit is made in (a
	// foreign name's view of the site): the value is mapped there, edited,
	// and mapped back.
	Coords Coords
}

// Coords maps a site's values into another library's coordinates for the
// same site (TransformerLens's, after its weight processing) and back.
type Coords interface {
	// To returns x in the other coordinates (a new tensor).
	To(x *Tensor) (*Tensor, error)
	// From returns what y, in the other coordinates, writes in place of x.
	From(y, x *Tensor) (*Tensor, error)
}

// EditKind says what an Edit does.
type EditKind int

// Edit kinds.
const (
	Ablate EditKind = iota // set the slice to 0
	SetTo                  // set the slice to Value
	Add                    // add Vec at every position
)

// ParseEditTarget parses "POINT@LAYER[:I[:J...]]" ("POINT[:I...]" for once
// points): mlp.post_act@1:7 is neuron 7 of layer 1.
func ParseEditTarget(s string) (Site, []int, error) {
	return ParseEditTargetWith(s, ParseSite)
}

// ParseEditTargetWith is ParseEditTarget with the site part read by
// parseSite (a model's own, which also takes its foreign names).
func ParseEditTargetWith(s string, parseSite func(string) (Site, error)) (Site, []int, error) {
	parts := strings.Split(s, ":")
	site, err := parseSite(parts[0])
	if err != nil {
		return Site{}, nil, err
	}
	var idx []int
	for _, p := range parts[1:] {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return Site{}, nil, fmt.Errorf("%q: index %q is not a non-negative integer", s, p)
		}
		idx = append(idx, v)
	}
	if max := len(site.Point.Shape()) - 2; len(idx) > max {
		return Site{}, nil, fmt.Errorf("%q: %d indices, but %s has %d axes after batch and token (%v)", s, len(idx), site.Point, max, site.Point.Shape()[2:])
	}
	return site, idx, nil
}

// Register adds the edit to h as a writing hook at its site.
func (e Edit) Register(h *Hooks) func() {
	var opts []Option
	if e.Site.Point.PerLayer() {
		opts = append(opts, AtLayers(e.Site.Layer))
	}
	return h.Add(e.Site.Point, func(_ *Context, t *Tensor) (*Tensor, error) {
		if e.Coords == nil {
			return t, e.apply(t)
		}
		y, err := e.Coords.To(t)
		if err != nil {
			return nil, err
		}
		if err := e.apply(y); err != nil {
			return nil, err
		}
		back, err := e.Coords.From(y, t)
		if err != nil {
			return nil, err
		}
		copy(t.Data, back.Data)
		return t, nil
	}, opts...)
}

// ErrEditShape: an Add edit's vector does not have the point's trailing
// shape.
var ErrEditShape = errors.New("edit does not fit the point")

func (e Edit) apply(t *Tensor) error {
	switch e.Kind {
	case Ablate:
		return t.FillTrailing(0, e.Index...)
	case SetTo:
		return t.FillTrailing(e.Value, e.Index...)
	case Add:
		if e.VecShape != nil && (len(t.Shape) < 2 || !slices.Equal(e.VecShape, t.Shape[2:])) {
			return fmt.Errorf("%w: vector of shape %v does not match the trailing axes of %v", ErrEditShape, e.VecShape, t.Shape)
		}
		return t.AddTrailing(e.Vec)
	}
	return fmt.Errorf("unknown edit kind %d", e.Kind)
}

// ParseSetSpec parses a set edit in the CLI's form, POINT@LAYER[:I...]=VALUE,
// with the site part read by parseSite. Errors carry no prefix: callers name
// the flag or field.
func ParseSetSpec(s string, parseSite func(string) (Site, error)) (Site, []int, float32, error) {
	target, val, ok := strings.Cut(s, "=")
	if !ok {
		return Site{}, nil, 0, errors.New("want POINT@LAYER[:I...]=VALUE")
	}
	site, idx, err := ParseEditTargetWith(target, parseSite)
	if err != nil {
		return Site{}, nil, 0, err
	}
	v, err := strconv.ParseFloat(val, 32)
	if err != nil {
		return Site{}, nil, 0, fmt.Errorf("%q is not a number", val)
	}
	return site, idx, float32(v), nil
}

// ErrAddIndices: an add edit names indices; its vector covers the point's
// trailing axes.
var ErrAddIndices = errors.New("indices are not taken; the vector covers the point's trailing axes")
