package graphs

import (
	"slices"
	"testing"
)

// A scalar (rank 0) that a later segment reads is recomputed there rather
// than passed between segments: onnxruntime_go cannot hold a rank-0 tensor.
// Torch exports compute such scalars from shapes (the sequence length that
// rotary embeddings and masks read in every layer).
func TestSplitRecomputesScalarsInTheSegmentThatReadsThem(t *testing.T) {
	b := NewBuilder("scalars")
	x := b.Input("x", Float, "B", "T")
	shape := b.Op("Shape", "shape", []string{x})                       // [2], int64
	idx := b.ConstI64("idx", nil, 1)                                   // scalar index
	n := b.Op("Gather", "n", []string{shape, idx}, AttrInt("axis", 0)) // scalar
	nf := b.Op("Cast", "nf", []string{n}, AttrInt("to", int64(Float))) // scalar
	y := b.Op("Mul", "y", []string{x, nf})                             // the cut
	z := b.Op("Add", "z", []string{y, nf})
	b.Output(z, Float, "B", "T")
	segs, err := Split(b.Model(), Spec{Outputs: []string{z}, Cuts: []string{y}})
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 {
		t.Fatalf("%d segments", len(segs))
	}
	for _, s := range []string{n, nf} {
		if slices.Contains(segs[0].Outputs, s) || slices.Contains(segs[1].Inputs, s) {
			t.Errorf("scalar %s crosses: seg0 outputs %v, seg1 inputs %v", s, segs[0].Outputs, segs[1].Inputs)
		}
	}
	if !slices.Contains(segs[1].Inputs, shape) || !slices.Contains(segs[1].Inputs, y) {
		t.Errorf("seg1 inputs %v, want the shape (rank 1) and the cut", segs[1].Inputs)
	}
	var ops []string
	for _, nd := range segs[1].Model.GetGraph().GetNode() {
		ops = append(ops, nd.GetOpType())
	}
	if !slices.Equal(ops, []string{"Gather", "Cast", "Add"}) {
		t.Errorf("seg1 runs %v, want Gather, Cast, Add", ops)
	}
	if inits := segs[1].Model.GetGraph().GetInitializer(); len(inits) != 1 || inits[0].GetName() != idx {
		t.Errorf("seg1 initializers %v", inits)
	}

	// Without a cut nothing changes.
	segs, err = Split(b.Model(), Spec{Outputs: []string{z}})
	if err != nil || len(segs) != 1 || len(segs[0].Model.GetGraph().GetNode()) != 5 {
		t.Fatalf("uncut: %v, %d segments", err, len(segs))
	}
}
