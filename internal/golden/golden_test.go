package golden

import (
	"math"
	"testing"
)

func TestCasesLoad(t *testing.T) {
	c := Load(t)
	if len(c.Inputs) != 4 || len(c.HookLocations) != 27 {
		t.Fatalf("inputs %d, hook locations %d", len(c.Inputs), len(c.HookLocations))
	}
	in := c.Input("batch_right")
	if in == nil || in.LogitsLast == nil || len(in.Interventions) != 8 || in.Grads == nil {
		t.Fatalf("batch_right incomplete: %+v", in)
	}
	v := Read(t, *in.LogitsLast)
	if len(v) != 2*50257 {
		t.Fatalf("logits_last has %d values", len(v))
	}
}

func TestDiffNegInf(t *testing.T) {
	inf := float32(math.Inf(1))
	ninf := -inf
	if _, f := Diff([]float32{1, ninf}, []float32{1, ninf}, 1e-4); f != "" {
		t.Fatal(f)
	}
	if _, f := Diff([]float32{1, 0}, []float32{1, ninf}, 1e-4); f == "" {
		t.Fatal("a finite value where -inf is wanted must fail")
	}
	if _, f := Diff([]float32{1.001}, []float32{1}, 1e-4); f == "" {
		t.Fatal("a diff above the tolerance must fail")
	}
}
