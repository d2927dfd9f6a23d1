package hooks

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckRefusesAbsentSitesAndLayers(t *testing.T) {
	has := func(s Site) bool { return s.Point != AttnQKSoftmaxDenominator && s.Layer < 2 }
	noop := func(*Context, *Tensor) error { return nil }
	for _, tc := range []struct {
		name string
		reg  func(h *Hooks)
		want error
	}{
		{"layer beyond the model", func(h *Hooks) { h.Observe(MLPPostAct, noop, AtLayers(0, 5)) }, ErrLayerRange},
		{"negative layer", func(h *Hooks) { h.Observe(MLPPostAct, noop, AtLayers(-1)) }, ErrLayerRange},
		{"point the model lacks", func(h *Hooks) { h.Observe(AttnQKSoftmaxDenominator, noop) }, ErrAbsentSite},
		{"present point", func(h *Hooks) { h.Observe(MLPPostAct, noop, AtLayers(1)) }, nil},
		{"sae points exempt", func(h *Hooks) { h.Observe(SAELatents, noop, AtLayers(1)) }, nil},
		{"once point", func(h *Hooks) { h.Observe(LogitsPoint, noop) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New()
			tc.reg(h)
			set := Snapshot(h)
			err := set.Check(2, has)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Check: %v, want %v", err, tc.want)
			}
			if _, uerr := set.Uses(2); !errors.Is(uerr, tc.want) || (tc.want == nil) != (uerr == nil) {
				t.Fatalf("Uses after Check: %v, want %v", uerr, tc.want)
			}
		})
	}
}

func TestRegisterPointOrdersAfterItsAnchor(t *testing.T) {
	p, err := RegisterPoint(PointSpec{Path: "test.after_pre_act", PerLayer: true, Shape: []Dim{Batch, Seq, FF}, After: MLPPreAct})
	if err != nil {
		t.Fatal(err)
	}
	again, err := RegisterPoint(PointSpec{Path: "test.after_pre_act", PerLayer: true, Shape: []Dim{Batch, Seq, FF}, After: MLPPreAct})
	if err != nil || again != p {
		t.Fatalf("registering the same spec again: %v %v", again, err)
	}
	if _, err := RegisterPoint(PointSpec{Path: "test.after_pre_act", PerLayer: false, Shape: []Dim{Batch, Seq, FF}, After: LogitsPoint}); !errors.Is(err, ErrPointExists) {
		t.Fatalf("another spec under a taken path: %v", err)
	}
	if _, err := RegisterPoint(PointSpec{Path: "mlp.post_act", PerLayer: true, Shape: []Dim{Batch, Seq, FF}, After: MLPPreAct}); !errors.Is(err, ErrPointExists) {
		t.Fatalf("an original point's path: %v", err)
	}
	if got, err := Parse("test.after_pre_act"); err != nil || got != p {
		t.Fatalf("Parse: %v %v", got, err)
	}
	order := func(pt Point, l int) int { return Site{Point: pt, Layer: l}.Order(2) }
	if !(order(MLPPreAct, 1) < order(p, 1) && order(p, 1) < order(MLPPostAct, 1) && order(PostMLP, 0) < order(p, 1)) {
		t.Fatalf("order %d between %d and %d", order(p, 1), order(MLPPreAct, 1), order(MLPPostAct, 1))
	}
	if order(ResidPostEmb, -1) >= order(LnAttnScale, 0) || order(LogitsPoint, -1) <= order(PostMLP, 1) {
		t.Fatal("once points out of place")
	}
	found := false
	for _, q := range Points() {
		found = found || q == p
	}
	if !found || len(TDBPoints()) != 27 {
		t.Fatalf("Points() lacks the registered point or TDBPoints() changed: %d", len(TDBPoints()))
	}
	for _, bad := range []PointSpec{
		{Path: "x@1", PerLayer: true, Shape: []Dim{Batch, Seq}, After: MLPPreAct},
		{Path: "x.y", PerLayer: true, Shape: []Dim{Batch, Seq}, After: LogitsPoint},
		{Path: "x.z", PerLayer: true, Shape: []Dim{Seq}, After: MLPPreAct},
	} {
		if _, err := RegisterPoint(bad); err == nil {
			t.Errorf("registered %+v", bad)
		}
	}
}

func TestParseSetSpec(t *testing.T) {
	for _, tc := range []struct {
		in, err string
		want    float32
	}{
		{"mlp.post_act@1:7=1.5", "", 1.5},
		{"mlp.post_act@1:7", "want POINT@LAYER", 0},
		{"mlp.post_act@1=abc", `"abc" is not a number`, 0},
		{"mlp.postact@1=1", "unknown hook point", 0},
	} {
		site, idx, v, err := ParseSetSpec(tc.in, ParseSite)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || v != tc.want || site.Point != MLPPostAct || site.Layer != 1 || len(idx) != 1 || idx[0] != 7 {
			t.Errorf("%s: %v %v %v %v", tc.in, site, idx, v, err)
		}
	}
}
