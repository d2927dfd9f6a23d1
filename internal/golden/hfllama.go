package golden

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// HFLlamaTensor is one reference tensor of hf/llama/cases.json; File is
// absolute once loaded.
type HFLlamaTensor struct {
	File   string  `json:"file"`
	Shape  []int   `json:"shape"`
	MaxAbs float64 `json:"max_abs"`
}

// HFLlamaCases is the shared set's hf/llama/cases.json: reference values of
// a Hugging Face LlamaForCausalLM folder at TDB hook points, MLP-unit
// ablations and greedy sampling.
type HFLlamaCases struct {
	Dir    string `json:"-"` // the hf/llama folder (the checkpoint)
	Inputs []struct {
		Name        string  `json:"name"`
		Tokens      [][]int `json:"tokens"`
		Activations []struct {
			Point string `json:"point"`
			Layer *int   `json:"layer"`
			NPY   string `json:"npy"`
			HFLlamaTensor
		} `json:"activations"`
		Interventions []struct {
			Name   string        `json:"name"`
			Ablate string        `json:"ablate"`
			Logits HFLlamaTensor `json:"logits"`
		} `json:"interventions"`
	} `json:"inputs"`
	Sampling []struct {
		Name      string  `json:"name"`
		Prompts   [][]int `json:"prompt_tokens"`
		NumTokens int     `json:"num_tokens"`
		Ablate    string  `json:"ablate"`
		Tokens    [][]int `json:"tokens"`
	} `json:"sampling"`
}

// LoadHFLlama reads hf/llama/cases.json of the shared set (skipping the
// test when the set is absent), its tensor files made absolute.
func LoadHFLlama(t testing.TB) *HFLlamaCases {
	t.Helper()
	dir := filepath.Join(RequireShared(t, "hf"), "llama")
	b, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := &HFLlamaCases{Dir: dir}
	if err := json.Unmarshal(b, c); err != nil {
		t.Fatal(err)
	}
	abs := func(tn *HFLlamaTensor) { tn.File = filepath.Join(dir, tn.File) }
	for i := range c.Inputs {
		in := &c.Inputs[i]
		for j := range in.Activations {
			abs(&in.Activations[j].HFLlamaTensor)
		}
		for j := range in.Interventions {
			abs(&in.Interventions[j].Logits)
		}
	}
	return c
}

// CheckFile fails the test when got differs from the reference tensor file
// beyond the tolerance of its max_abs, or has another shape.
func (tn HFLlamaTensor) CheckFile(t testing.TB, name string, got []float32, shape []int) {
	t.Helper()
	if len(shape) != len(tn.Shape) {
		t.Errorf("%s: shape %v, want %v", name, shape, tn.Shape)
		return
	}
	for i := range shape {
		if shape[i] != tn.Shape[i] {
			t.Errorf("%s: shape %v, want %v", name, shape, tn.Shape)
			return
		}
	}
	want, err := ReadFile(tn.File)
	if err != nil {
		t.Fatal(err)
	}
	if _, fail := Diff(got, want, Tolerance(tn.MaxAbs)); fail != "" {
		t.Errorf("%s: %s", name, fail)
	}
}
