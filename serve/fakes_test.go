package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
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
