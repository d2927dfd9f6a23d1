package sae

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
)

// randomSAE is the spec of a random state dict for tests.
type randomSAE struct {
	nLatents, nInputs int
	act               Activation
	freq              []float32 // nil: no frequency buffer
	seed              uint64
	// TopK only: write k and postact_fn as the TDB file does (nested and at the
	// top level), or only at the top level.
	topLevelOnly bool
}

// stateDict builds an SAE state dict with random weights.
func (r randomSAE) stateDict() *torchpt.StateDict {
	rng := rand.New(rand.NewPCG(r.seed, 7))
	N, n := r.nLatents, r.nInputs
	normal := func(k int, scale float64) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * scale)
		}
		return v
	}
	sd := &torchpt.StateDict{Tensors: map[string]*torchpt.Tensor{}, Values: map[string]any{}}
	add := func(key string, shape []int, v []float32) {
		sd.Keys = append(sd.Keys, key)
		sd.Tensors[key] = &torchpt.Tensor{DType: "float32", Shape: shape, F32: v}
	}
	add(keyPreBias, []int{n}, normal(n, 0.1))
	add(keyLatentBias, []int{N}, normal(N, 0.1))
	sd.Keys = append(sd.Keys, keyLastNZ)
	sd.Tensors[keyLastNZ] = &torchpt.Tensor{DType: "int64", Shape: []int{N}, I64: make([]int64, N)}
	if r.freq != nil {
		add(keyFrequency, []int{N}, r.freq)
	}
	add(keyMeanSquare, []int{N}, normal(N, 1))
	add(keyEncoder, []int{N, n}, normal(N*n, 0.3))
	add(keyDecoder, []int{n, N}, normal(n*N, 0.3))
	act := r.act
	if act.Name == "" {
		act.Name = ReLU
	}
	value := func(k string, v any) {
		sd.Keys = append(sd.Keys, k)
		sd.Values[k] = v
	}
	if act.Name == TopK {
		value("activation.k", int64(act.K))
		value("activation.postact_fn", act.PostAct)
	}
	value("activation", act.Name)
	asd := map[string]any{}
	if act.Name == TopK && !r.topLevelOnly {
		asd = map[string]any{"k": int64(act.K), "postact_fn": act.PostAct}
	}
	value("activation_state_dict", asd)
	return sd
}

// save writes the state dict as a .pt file.
func (r randomSAE) save(t testing.TB, dir, name string) string {
	t.Helper()
	sd := r.stateDict()
	path := filepath.Join(dir, name)
	if err := torchpt.SaveStateDict(path, sd.Keys, sd.Tensors, sd.Values); err != nil {
		t.Fatal(err)
	}
	return path
}

func ones(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// withDead returns frequencies of ones with the last dead entries zero.
func withDead(n, dead int) []float32 {
	v := ones(n)
	for i := n - dead; i < n; i++ {
		v[i] = 0
	}
	return v
}
