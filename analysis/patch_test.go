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
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Patch(cancelled, good); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v, want context.Canceled", err)
	}
}

// Batches that start at their first patched layer and run the head on the
// last position only give the values of whole passes, for every kind of
// point: once before the layers, once after them, per layer, head points
// per position and per head, attention patterns along the query axis, keys.
func TestPatchPartialRunsMatchWholePasses(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	for _, c := range []struct {
		p   hooks.Point
		per Per
	}{
		{hooks.ResidPostEmb, PerPosition}, {hooks.PostLnF, PerPosition}, {hooks.LnFScale, PerLayer},
		{hooks.AttnQKProbs, PerPosition}, {hooks.AttnQKProbs, PerHead}, {hooks.AttnK, PerPosition},
		{hooks.MLPPostAct, PerLayer}, {hooks.PostMLP, PerPosition},
	} {
		spec := PatchSpec{Clean: []int{3260, 5335, 290, 1757, 1364}, Corrupted: []int{3260, 1757, 290, 5335, 1364},
			Point: c.p, Per: c.per, MaxBatch: 5, Metric: Metric{Kind: Logit, Target: 5335}}
		fast, err := m.Patch(ctx, spec)
		if err != nil {
			t.Fatalf("%s per %s: %v", c.p, c.per, err)
		}
		spec.FullPasses = true
		slow, err := m.Patch(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		a, b := flat(fast.Raw), flat(slow.Raw)
		if worst, fail := golden.Diff(a, b, 2e-5); fail != "" {
			t.Errorf("%s per %s: %s", c.p, c.per, fail)
		} else if len(a) == 0 {
			t.Errorf("%s per %s: empty table", c.p, c.per)
		} else {
			t.Logf("%s per %s: %d x %d, worst %.3g", c.p, c.per, len(fast.Layers), fast.Cols, worst)
		}
	}
}
