package analysis

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// openImported imports a whole ONNX graph with its hook map (the imported
// architecture) and opens analyses over it.
func openImported(t *testing.T, src string, o export.ImportOptions) *Model {
	t.Helper()
	dir := filepath.Join(t.TempDir(), filepath.Base(src))
	if _, err := modelctx.Import(filepath.Join(src, "model.onnx"), filepath.Join(src, "hookmap.json"), dir, o); err != nil {
		t.Fatal(err)
	}
	tr, err := modelctx.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(tr)
	if err != nil {
		tr.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		tr.Close()
	})
	return m
}

// The golden GPT-2 exported whole by torch and imported with its hook map
// reproduces the workflow references: the analyses use only points,
// partial runs and weights by location.
func TestImportedGPT2ReproducesWorkflowGolden(t *testing.T) {
	w := golden.LoadWorkflows(t)
	src := golden.RequireShared(t, "foreign")
	m := openImported(t, src, export.ImportOptions{Tokenizer: "gpt2"})
	ctx := context.Background()
	for _, i := range []int{0, 3} {
		tb := w.Patching.Tables[i]
		p, _ := hooks.Parse(tb.Point)
		per, _ := ParsePer(tb.Per)
		res, err := m.Patch(ctx, PatchSpec{Clean: w.Prompts.Clean.Tokens, Corrupted: w.Prompts.Corrupted.Tokens, Point: p, Per: per,
			Metric: Metric{Kind: LogitDiff, Target: w.Target.ID, Distractor: w.Distractor.ID}})
		if err != nil {
			t.Fatal(err)
		}
		checkTable(t, w, tb.Name, flat(res.Raw), tb.Raw, tb.TolRaw, false)
	}
	c, err := m.Run(ctx, [][]int{w.DLA.Tokens})
	if err != nil {
		t.Fatal(err)
	}
	lens, err := c.Lens(ctx, 0, LensOptions{Target: w.Target.ID, HasTarget: true})
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, w, "lens target_logit", flat(lens.TargetLogit), w.Lens.TargetLogit, golden.Tolerance(w.Lens.TargetLogit.MaxAbs), false)
	d, err := c.DecomposeResid(ctx, PerHead)
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.LogitAttrs(d, Metric{Kind: LogitDiff, Target: w.Target.ID, Distractor: w.Distractor.ID})
	if err != nil {
		t.Fatal(err)
	}
	w.Check(t, "dla per head", a.Values.Data, w.DLA.PerHead.AllPositions)
}

// A Llama-style graph (RMSNorm, no position embedding, no TDB weights)
// imported with its hook map: patching, the lens and the per-layer
// decomposition work from its points alone; direct logit attribution,
// which needs the final norm's gain and the unembedding, says what is
// missing.
func TestImportedLlamaWorkflows(t *testing.T) {
	src := filepath.Join(golden.Dir(), "foreign_llama")
	if _, err := os.Stat(src); err != nil {
		t.Skip("no foreign_llama golden set")
	}
	m := openImported(t, src, export.ImportOptions{})
	ctx := context.Background()
	clean := []int{5, 17, 99, 3, 250, 42, 7}
	corrupted := []int{5, 17, 98, 3, 251, 42, 7}
	res, err := m.Patch(ctx, PatchSpec{Clean: clean, Corrupted: corrupted, Point: hooks.PostMLP, Per: PerPosition,
		Metric: Metric{Kind: LogitDiff, Target: 11, Distractor: 12}})
	if err != nil {
		t.Fatal(err)
	}
	L, T := len(res.Layers), len(clean)
	if got := res.Normalized[L-1][T-1]; math.Abs(got-1) > 1e-4 {
		t.Errorf("patching the last layer's last position: normalised %v, want 1", got)
	}
	for l := range res.Layers {
		for p := 0; p < 2; p++ { // before the first differing token
			if math.Abs(res.Normalized[l][p]) > 1e-4 {
				t.Errorf("layer %d position %d: normalised %v, want 0", l, p, res.Normalized[l][p])
			}
		}
	}
	c, err := m.Run(ctx, [][]int{clean})
	if err != nil {
		t.Fatal(err)
	}
	lens, err := c.Lens(ctx, 0, LensOptions{K: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(lens.TopIDs) != m.T.NLayers()+1 {
		t.Fatalf("%d lens rows", len(lens.TopIDs))
	}
	// The last lens row is the model's own logits.
	final := modelctx.TopK(lastRow(c.Logits, 0), 3)
	for j, id := range lens.TopIDs[m.T.NLayers()][T-1] {
		if id != final[j] {
			t.Errorf("last lens row %v, model %v", lens.TopIDs[m.T.NLayers()][T-1], final)
		}
	}
	d, err := c.DecomposeResid(ctx, PerLayer)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("labels %v, sum error %.3g", d.Labels, d.MaxError)
	_, err = c.LogitAttrs(d, Metric{Kind: Logit, Target: 11})
	if !errors.Is(err, modelctx.ErrNoWeight) && !errors.Is(err, ErrMissingPoint) {
		t.Errorf("dla on a graph without weights: %v", err)
	}
	t.Logf("dla: %v", err)
}
