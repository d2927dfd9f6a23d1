package serve

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/analysis"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// TestAnalysisWorkflowsMatchTheLibrary: patch, lens and dla through the API
// give the analysis package's own numbers, and bad input is a 400 naming it.
func TestAnalysisWorkflowsMatchTheLibrary(t *testing.T) {
	_, ts, _ := start(t, WithWorkflows(AnalysisWorkflows()))
	m := goldenModel(t)
	am, err := analysis.New(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	clean, corrupted := []int{464, 3139, 373, 1363, 1110}, []int{464, 3290, 373, 1363, 1110}

	var lens struct {
		Layers []string `json:"layers"`
		Grid   [][]struct {
			ID   int     `json:"id"`
			Prob float64 `json:"prob"`
		} `json:"grid"`
		TopIDs [][][]int `json:"top_ids"`
	}
	postOK(t, ts.URL+"/v1/workflows/lens", map[string]any{"tokens": [][]int{clean}, "k": 3}, &lens)
	want, err := am.Lens(ctx, clean, analysis.LensOptions{K: 3})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(lens.TopIDs) != fmt.Sprint(want.TopIDs) || len(lens.Grid) != len(want.Labels) {
		t.Fatalf("lens: %v, want %v", lens.TopIDs, want.TopIDs)
	}
	for l, row := range lens.Grid {
		for p, c := range row {
			if c.ID != want.TopIDs[l][p][0] || math.Abs(c.Prob-want.TopProbs[l][p][0]) > 1e-9 || c.Prob <= 0 || c.Prob > 1 {
				t.Fatalf("lens grid [%d][%d] = %+v", l, p, c)
			}
		}
	}

	var patch struct {
		Table [][]float64 `json:"table"`
		Clean float64     `json:"clean"`
	}
	postOK(t, ts.URL+"/v1/workflows/patch", map[string]any{"clean": clean, "corrupted": corrupted,
		"point": "resid.torso.post_mlp", "per": "position", "target": "#262", "distractor": "#11"}, &patch)
	wantPatch, err := am.Patch(ctx, analysis.PatchSpec{Clean: clean, Corrupted: corrupted, Point: hooks.PostMLP,
		Metric: analysis.Metric{Kind: analysis.LogitDiff, Target: 262, Distractor: 11}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(patch.Table) != fmt.Sprint(wantPatch.Raw) || patch.Clean != wantPatch.Clean {
		t.Fatalf("patch: %v, want %v", patch.Table, wantPatch.Raw)
	}

	var dla struct {
		Total  float64 `json:"total"`
		Actual float64 `json:"actual"`
	}
	postOK(t, ts.URL+"/v1/workflows/dla", map[string]any{"tokens": [][]int{clean}, "target": "#262", "per": "layer"}, &dla)
	if math.Abs(dla.Total-dla.Actual) > 1e-3*math.Max(1, math.Abs(dla.Actual)) {
		t.Fatalf("dla components add to %v, the logit is %v", dla.Total, dla.Actual)
	}

	for _, bad := range []struct {
		name, body, want string
	}{
		{"lens without a prompt", `{}`, "give one prompt"},
		{"patch of different lengths", `{"clean":[1,2,3],"corrupted":[1,2],"point":"resid.torso.post_mlp","target":"#1","distractor":"#2"}`, "different token lengths"},
		{"dla per position", `{"tokens":[[1,2]],"target":"#1","per":"position"}`, "want head or layer"},
		{"lens with an unknown field", `{"tokens":[[1,2]],"colour":1}`, "unknown field"},
	} {
		name := strings.Fields(bad.name)[0]
		code, out := post(t, ts.URL+"/v1/workflows/"+name, bad.body)
		if code != http.StatusBadRequest || !strings.Contains(string(out), bad.want) {
			t.Errorf("%s: %d %s, want 400 mentioning %q", bad.name, code, out, bad.want)
		}
	}
}
