package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// fakeRecords stands in for the harvest package's record sets: unit u of
// layer l has one example whose activations rise along the tokens.
func fakeRecords(ctx context.Context, layer, unit int) (json.RawMessage, error) {
	if unit >= 100 {
		return nil, fmt.Errorf("%w: unit %d", ErrNotFound, unit)
	}
	rec := map[string]any{
		"neuron_id": map[string]int{"layer_index": layer, "neuron_index": unit},
		"most_positive_activation_records": []map[string]any{
			{"tokens": []string{"The", " quick", " brown", " fox"}, "activations": []float32{0, 0.5, 1, float32(unit) + 2}},
			{"tokens": []string{"Hello", ",", " world"}, "activations": []float32{1, 0, 0.25}},
		},
	}
	return json.Marshal(rec)
}

// fakeLens stands in for the workflows package: a "lens" workflow whose
// grid has one row per layer and the prompt's tokens in it.
type fakeLens struct{}

func (fakeLens) Names() []string { return []string{"lens"} }

func (fakeLens) Run(ctx context.Context, name string, m *modelctx.Transformer, body json.RawMessage) (any, error) {
	var req struct {
		Prompts []string `json:"prompts"`
		Tokens  [][]int  `json:"tokens"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	T := 0
	if len(req.Tokens) > 0 {
		T = len(req.Tokens[0])
	} else if tok, err := modelTokenizer(m); err == nil && len(req.Prompts) > 0 {
		T = len(tok.Encode(req.Prompts[0]))
	}
	type cell struct {
		Token string  `json:"token"`
		Prob  float64 `json:"prob"`
	}
	grid := make([][]cell, m.NLayers())
	for l := range grid {
		for i := 0; i < T; i++ {
			grid[l] = append(grid[l], cell{Token: fmt.Sprintf("L%dP%d", l, i), Prob: float64(l+1) / float64(m.NLayers()+1)})
		}
	}
	return map[string]any{"layers": []int{0, 1}, "grid": grid}, nil
}

var (
	saeOnce sync.Once
	testAE  *sae.Autoencoder
	saeErr  error
	saeDir  string
)

// goldenSAE opens the golden autoencoder of mlp.post_act at layer 1 once.
func goldenSAE(t testing.TB) *sae.Autoencoder {
	t.Helper()
	saeOnce.Do(func() {
		saeDir, saeErr = tempDir()
		if saeErr != nil {
			return
		}
		testAE, saeErr = sae.Open(context.Background(), filepath.Join(golden.Dir(), "sae", "mlp_post_act.layer1.pt"), sae.WithCache(saeDir))
	})
	if saeErr != nil {
		t.Fatal(saeErr)
	}
	return testAE
}
