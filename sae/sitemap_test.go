package sae

import (
	"fmt"
	"math"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

func TestSiteMapRoundTrip(t *testing.T) {
	x := &hooks.Tensor{Shape: []int{2, 3}, Data: []float32{1, 2, 6, -3, 0, 3}}
	for _, c := range []struct {
		m    *SiteMap
		want []float32
	}{
		{nil, []float32{1, 2, 6, -3, 0, 3}},
		{&SiteMap{Center: true}, []float32{-2, -1, 3, -3, 0, 3}},
		{&SiteMap{Shift: []float32{1, 1, 1}}, []float32{0, 1, 5, -4, -1, 2}},
		{&SiteMap{Scale: 2}, []float32{2, 4, 12, -6, 0, 6}},
		{&SiteMap{Center: true, Shift: []float32{0, 1, 0}, Scale: 2}, []float32{-4, -4, 6, -6, -2, 6}},
	} {
		y, err := c.m.To(x, 3)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(y.Data) != fmt.Sprint(c.want) {
			t.Errorf("%+v: To %v, want %v", c.m, y.Data, c.want)
		}
		back, err := c.m.From(y, x, 3)
		if err != nil {
			t.Fatal(err)
		}
		for i := range back.Data {
			if math.Abs(float64(back.Data[i]-x.Data[i])) > 1e-6 {
				t.Errorf("%+v: From(To(x)) = %v, want %v", c.m, back.Data, x.Data)
				break
			}
		}
	}
	if _, err := (&SiteMap{Shift: []float32{1, 2}}).To(x, 3); err == nil {
		t.Error("a shift of the wrong width was accepted")
	}
}

// TestSiteMapGradients checks GradTo against the map's Jacobian: for
// x' = From(f(To(x)), x) with f(y) = y ⊙ w, d/dx of Σ g·x'.
func TestSiteMapGradients(t *testing.T) {
	m := &SiteMap{Center: true, Shift: []float32{0.5, -1, 2}, Scale: 1.5}
	x := &hooks.Tensor{Shape: []int{1, 3}, Data: []float32{0.3, -2, 1.1}}
	w := []float32{2, -1, 0.5}
	g := &hooks.Tensor{Shape: []int{1, 3}, Data: []float32{1, 0.25, -3}}
	loss := func(x *hooks.Tensor) float64 {
		y, _ := m.To(x, 3)
		for i := range y.Data {
			y.Data[i] *= w[i]
		}
		out, _ := m.From(y, x, 3)
		var l float64
		for i := range out.Data {
			l += float64(g.Data[i] * out.Data[i])
		}
		return l
	}
	gy := m.GradFrom(g)
	for i := range gy.Data {
		gy.Data[i] *= w[i]
	}
	gx := m.GradTo(gy, g, 3)
	for i := range x.Data {
		xp, xm := x.Clone(), x.Clone()
		xp.Data[i] += 1e-3
		xm.Data[i] -= 1e-3
		fd := (loss(xp) - loss(xm)) / 2e-3
		if math.Abs(fd-float64(gx.Data[i])) > 1e-3 {
			t.Errorf("d/dx[%d] %g, finite difference %g", i, gx.Data[i], fd)
		}
	}
}
