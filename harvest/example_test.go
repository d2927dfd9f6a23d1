package harvest_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/harvest"
	"github.com/onnx-tdb/onnx-tdb/harvest/records"
)

// A point folder in TDB's layout, as onnx-tdb harvest writes it and as TDB's
// public datasets hold it, read back one unit at a time.
func ExampleLoadRecord() {
	dir, _ := os.MkdirTemp("", "records-")
	defer os.RemoveAll(dir)
	rec := &records.NeuronRecord{
		ID:           records.NeuronID{Layer: 1, Index: 7},
		MostPositive: []records.ActivationRecord{{Tokens: []string{" lent", "ils"}, Activations: []float32{2.5, 0.1}}},
		Mean:         0.05, Variance: 0.1, Skewness: math.NaN(), Kurtosis: math.NaN(),
	}
	p := filepath.Join(dir, "mlp.post_act", "collated-activations", "1")
	os.MkdirAll(p, 0o755)
	os.WriteFile(filepath.Join(p, "7.json"), records.Marshal(rec), 0o644)

	r, err := harvest.LoadRecord(context.Background(), dir, 1, 7)
	if err != nil {
		fmt.Println(err)
		return
	}
	top := r.MostPositive[0]
	fmt.Printf("layer %d unit %d: top example %q, max %.1f\n", r.ID.Layer, r.ID.Index, top.Tokens, top.Max())
	// Output: layer 1 unit 7: top example [" lent" "ils"], max 2.5
}
