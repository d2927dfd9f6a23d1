package golden

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Workflows is workflows/cases.json of the shared golden set: activation
// patching tables, logit-lens tables, residual decompositions with direct
// logit attribution, and partial runs, for the golden model.
type Workflows struct {
	Dir     string `json:"-"` // the workflows folder; tensor files are relative to it
	Prompts struct {
		Clean     Prompt `json:"clean"`
		Corrupted Prompt `json:"corrupted"`
	} `json:"prompts"`
	Target     Token `json:"target"`
	Distractor Token `json:"distractor"`
	Patching   struct {
		Tables []PatchTable `json:"tables"`
	} `json:"patching"`
	Lens struct {
		Prompt      string    `json:"prompt"`
		Tokens      []int     `json:"tokens"`
		K           int       `json:"k"`
		TargetLogit Tensor    `json:"target_logit"`
		TargetProb  Tensor    `json:"target_prob"`
		TopEps      float64   `json:"top_eps"`
		Top10Ids    [][][]int `json:"top10_ids"`
		Top10Logits Tensor    `json:"top10_logits"`
		LogitsLast  Tensor    `json:"lens_logits_last"`
		Resid       Tensor    `json:"resid"`
		CLI         []string  `json:"cli"`
		TargetRank  struct {
			Min [][]int `json:"min"`
			Max [][]int `json:"max"`
		} `json:"target_rank"`
		TopIDs struct {
			Values [][][]int `json:"values"`
		} `json:"top_ids"`
	} `json:"lens"`
	DLA struct {
		Prompt        string `json:"prompt"`
		Tokens        []int  `json:"tokens"`
		Decomposition struct {
			Labels     []string `json:"labels"`
			Components Tensor   `json:"components"`
			FinalResid Tensor   `json:"final_resid"`
			LnFScale   Tensor   `json:"ln_f_scale"`
		} `json:"decomposition"`
		PerHead           DLACase `json:"per_head"`
		PerLayer          DLACase `json:"per_layer"`
		PerHeadTargetOnly DLACase `json:"per_head_target_only"`
	} `json:"dla"`
	Partial struct {
		Tokens      []int `json:"tokens"`
		StopAtLayer []struct {
			Layer int `json:"layer"`
			Tensor
		} `json:"stop_at_layer"`
		StartResid     Tensor `json:"start_resid"`
		StartResidLast Tensor `json:"start_resid_last"`
		StartRuns      []struct {
			Name       string  `json:"name"`
			StartLayer int     `json:"start_layer"`
			Input      string  `json:"input"`
			Logits     *Tensor `json:"logits"`
			LogitsLast *Tensor `json:"logits_last"`
		} `json:"start_runs"`
	} `json:"partial"`
}

// Prompt is a text and its tokens.
type Prompt struct {
	Text   string `json:"text"`
	Tokens []int  `json:"tokens"`
}

// Token is a single token's text and id.
type Token struct {
	Text string `json:"text"`
	ID   int    `json:"id"`
}

// PatchTable is one activation-patching reference table.
type PatchTable struct {
	Name          string   `json:"name"`
	Point         string   `json:"point"`
	Per           string   `json:"per"`
	Metric        string   `json:"metric"`
	Clean         float64  `json:"clean"`
	Corrupted     float64  `json:"corrupted"`
	Raw           Tensor   `json:"raw"`
	Normalized    Tensor   `json:"normalized"`
	Compare       string   `json:"compare"` // "absolute", or "relative" (divide by max_abs first)
	TolRaw        float64  `json:"tol_raw"`
	TolNormalized float64  `json:"tol_normalized"`
	CLIJSON       []string `json:"cli_json"`
	CLISave       []string `json:"cli_save"`
}

// DLACase is one direct-logit-attribution reference.
type DLACase struct {
	Per          string   `json:"per"`
	Quantity     string   `json:"quantity"`
	Labels       []string `json:"labels"`
	LastPosition struct {
		Values []float64 `json:"values"`
		Tol    float64   `json:"tol"`
		Actual float64   `json:"actual"`
	} `json:"last_position"`
	AllPositions Tensor   `json:"all_positions"`
	CLI          []string `json:"cli"`
}

// LoadWorkflows reads workflows/cases.json of the shared golden set,
// skipping the test when the set is absent.
func LoadWorkflows(t testing.TB) *Workflows {
	t.Helper()
	dir := RequireShared(t, "workflows")
	b, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	w := &Workflows{Dir: dir}
	if err := json.Unmarshal(b, w); err != nil {
		t.Fatalf("parse workflows/cases.json: %v", err)
	}
	return w
}

// Read loads one of the set's tensors.
func (w *Workflows) Read(t testing.TB, tn Tensor) []float32 {
	t.Helper()
	v, err := ReadFile(filepath.Join(w.Dir, tn.File))
	if err != nil {
		t.Fatal(err)
	}
	if n := Numel(tn.Shape); n != len(v) {
		t.Fatalf("%s: %d values, shape %v wants %d", tn.File, len(v), tn.Shape, n)
	}
	return v
}

// Check compares got with one of the set's tensors within the golden
// tolerance.
func (w *Workflows) Check(t testing.TB, name string, got []float32, tn Tensor) {
	t.Helper()
	if _, fail := Diff(got, w.Read(t, tn), Tolerance(tn.MaxAbs)); fail != "" {
		t.Errorf("%s: %s", name, fail)
	}
}
