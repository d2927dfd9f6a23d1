package analysis

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/modelctx"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func TestGoldenLens(t *testing.T) {
	w := golden.LoadWorkflows(t)
	m := openGolden(t)
	lw := w.Lens
	for _, maxBatch := range []int{0, 1} {
		res, err := m.Lens(context.Background(), lw.Tokens, LensOptions{K: lw.K, Target: w.Target.ID, HasTarget: true, MaxBatch: maxBatch})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.TopIDs) != m.T.NLayers()+1 || !slices.Equal(res.Labels, []string{"resid.post_emb", "resid.torso.post_mlp@0", "resid.torso.post_mlp@1"}) {
			t.Fatalf("rows %v", res.Labels)
		}
		checkTable(t, w, "target_logit", flat(res.TargetLogit), lw.TargetLogit, golden.Tolerance(lw.TargetLogit.MaxAbs), false)
		checkTable(t, w, "target_prob", flat(res.TargetProb), lw.TargetProb, 0, true)
		topLogits := w.Read(t, lw.Top10Logits)
		for r := range res.TopIDs {
			for p := range res.TopIDs[r] {
				want := lw.TopIDs.Values[r][p]
				wl := topLogits[(r*len(res.TopIDs[r])+p)*10:]
				for j, id := range res.TopIDs[r][p] {
					if d := math.Abs(float64(res.TopLogits[r][p][j]) - float64(wl[j])); d > lw.TopEps {
						t.Errorf("row %d position %d: top %d logit %v, want %v", r, p, j, res.TopLogits[r][p][j], wl[j])
					}
					tied := (j > 0 && float64(wl[j-1]-wl[j]) <= lw.TopEps) || (j+1 < 10 && float64(wl[j]-wl[j+1]) <= lw.TopEps)
					if id != want[j] && !tied {
						t.Errorf("row %d position %d: top ids %v, want %v", r, p, res.TopIDs[r][p], want)
					}
				}
				rk := res.TargetRank[r][p]
				if rk < lw.TargetRank.Min[r][p] || rk > lw.TargetRank.Max[r][p] {
					t.Errorf("row %d position %d: rank %d, want [%d,%d]", r, p, rk, lw.TargetRank.Min[r][p], lw.TargetRank.Max[r][p])
				}
			}
		}
	}
}

// The lens of the last row is the model's own logits, and the rows before
// it are the head run on each captured residual: checked against the
// reference's full lens logits at the last position.
func TestGoldenLensLogitsLast(t *testing.T) {
	w := golden.LoadWorkflows(t)
	m := openGolden(t)
	c, err := m.Run(context.Background(), [][]int{w.Lens.Tokens})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := c.AccumulatedResid()
	if err != nil {
		t.Fatal(err)
	}
	w.Check(t, "accumulated resid", acc.Data, w.Lens.Resid)
	res, err := c.Lens(context.Background(), 0, LensOptions{K: 50257})
	if err != nil {
		t.Fatal(err)
	}
	V := 50257
	want := w.Read(t, w.Lens.LogitsLast)
	T := len(w.Lens.Tokens)
	for r := range res.TopIDs {
		got := make([]float32, V)
		for j, id := range res.TopIDs[r][T-1] {
			got[id] = res.TopLogits[r][T-1][j]
		}
		if _, fail := golden.Diff(got, want[r*V:(r+1)*V], golden.Tolerance(w.Lens.LogitsLast.MaxAbs)); fail != "" {
			t.Errorf("row %d: %s", r, fail)
		}
	}
}

func TestTopKAndRank(t *testing.T) {
	v := []float32{0.5, 2, -1, 2, 3, 0}
	for _, c := range []struct {
		k    int
		want []int
	}{{1, []int{4}}, {3, []int{4, 1, 3}}, {6, []int{4, 1, 3, 0, 5, 2}}, {9, []int{4, 1, 3, 0, 5, 2}}} {
		if got := modelctx.TopK(v, c.k); !slices.Equal(got, c.want) {
			t.Errorf("modelctx.TopK(%d) = %v, want %v", c.k, got, c.want)
		}
	}
	// The large-k path (a full sort) agrees with the small-k one.
	big := make([]float32, 300)
	for i := range big {
		big[i] = float32((i*7919)%211) / 7
	}
	if a, b := modelctx.TopK(big, 64), modelctx.TopK(big, 100); !slices.Equal(a, b[:64]) {
		t.Errorf("TopK 64 %v, TopK 100 starts %v", a, b[:64])
	}
	for i, want := range []int{3, 1, 5, 1, 0, 4} {
		if got := Rank(v, i); got != want {
			t.Errorf("Rank(%d) = %d, want %d", i, got, want)
		}
	}
}
