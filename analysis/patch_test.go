package analysis

import (
	"context"
	"errors"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func TestGoldenPatchTables(t *testing.T) {
	w := golden.LoadWorkflows(t)
	m := openGolden(t)
	for _, tb := range w.Patching.Tables {
		t.Run(tb.Name, func(t *testing.T) {
			p, err := hooks.Parse(tb.Point)
			if err != nil {
				t.Fatal(err)
			}
			per, err := ParsePer(tb.Per)
			if err != nil {
				t.Fatal(err)
			}
			kind, err := ParseMetricKind(tb.Metric)
			if err != nil {
				t.Fatal(err)
			}
			for _, mode := range []struct {
				maxBatch int
				full     bool
			}{{0, false}, {3, false}, {0, true}} {
				res, err := m.Patch(context.Background(), PatchSpec{
					Clean: w.Prompts.Clean.Tokens, Corrupted: w.Prompts.Corrupted.Tokens,
					Point: p, Per: per, MaxBatch: mode.maxBatch, FullPasses: mode.full,
					Metric: Metric{Kind: kind, Target: w.Target.ID, Distractor: w.Distractor.ID},
				})
				if err != nil {
					t.Fatal(err)
				}
				rel := tb.Compare == "relative"
				checkTable(t, w, "raw", flat(res.Raw), tb.Raw, tb.TolRaw, rel)
				checkTable(t, w, "normalized", flat(res.Normalized), tb.Normalized, tb.TolNormalized, false)
				if n := golden.Numel(tb.Raw.Shape); n != len(res.Layers)*res.Cols {
					t.Errorf("table has %d x %d cells, want shape %v", len(res.Layers), res.Cols, tb.Raw.Shape)
				}
			}
		})
	}
}

func TestPatchBadInput(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	clean := []int{3260, 5335, 290, 1757}
	good := PatchSpec{Clean: clean, Corrupted: []int{3260, 1757, 290, 5335}, Point: hooks.PostMLP,
		Metric: Metric{Kind: LogitDiff, Target: 5335, Distractor: 1757}}
	for _, c := range []struct {
		name string
		edit func(*PatchSpec)
		want error
	}{
		{"different token lengths", func(s *PatchSpec) { s.Corrupted = s.Corrupted[:3] }, ErrTokenLength},
		{"per head without a head axis", func(s *PatchSpec) { s.Per = PerHead }, ErrNoHeadAxis},
		{"clean equals corrupted", func(s *PatchSpec) { s.Corrupted = clean }, ErrUndefined},
		{"layer out of range", func(s *PatchSpec) { s.Layers = []int{2} }, ErrLayer},
		{"target out of the vocabulary", func(s *PatchSpec) { s.Metric.Target = 1 << 20 }, ErrToken},
	} {
		spec := good
		c.edit(&spec)
		_, err := m.Patch(ctx, spec)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
}
