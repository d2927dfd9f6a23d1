package graphs

import (
	"slices"
	"testing"
)

// A read tensor that its segment also consumes goes out through an
// Identity under ReadName; one nothing else consumes goes out as it is.
func TestSplitExposesConsumedReadsThroughIdentity(t *testing.T) {
	b := NewBuilder("reads")
	x := b.Input("x", Float, "B", "T")
	y := b.Op("Relu", "y", []string{x}) // read, consumed by z
	z := b.Op("Neg", "z", []string{y})
	w := b.Op("Abs", "w", []string{z}) // read, consumed by nothing
	b.Output(w, Float, "B", "T")
	b.Type(y, Float, "B", "T")
	b.Type(z, Float, "B", "T")
	segs, err := Split(b.Model(), Spec{Outputs: []string{w}, Reads: []string{y, w}})
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	sg := segs[0]
	if len(sg.Fetch) != len(sg.Outputs) {
		t.Fatalf("fetch %v for outputs %v", sg.Fetch, sg.Outputs)
	}
	want := map[string]string{y: ReadName(y), w: w}
	for i, o := range sg.Outputs {
		if sg.Fetch[i] != want[o] {
			t.Errorf("output %s fetched as %s, want %s", o, sg.Fetch[i], want[o])
		}
	}
	var graphOuts []string
	for _, vi := range sg.Model.GetGraph().GetOutput() {
		graphOuts = append(graphOuts, vi.GetName())
	}
	if !slices.Equal(graphOuts, sg.Fetch) {
		t.Errorf("graph outputs %v, fetch %v", graphOuts, sg.Fetch)
	}
	identities := 0
	for _, n := range sg.Model.GetGraph().GetNode() {
		if n.GetOpType() == "Identity" {
			identities++
			if n.GetInput()[0] != y || n.GetOutput()[0] != ReadName(y) {
				t.Errorf("identity %v -> %v", n.GetInput(), n.GetOutput())
			}
		}
	}
	if identities != 1 {
		t.Errorf("%d identities, want 1", identities)
	}
}

// A consumed read tensor made by an op that ends no fusion (a Reshape, a
// Transpose) goes out as it is, without an Identity's copy.
func TestSplitExposesOtherReadsDirectly(t *testing.T) {
	b := NewBuilder("reads")
	x := b.Input("x", Float, "B", "T")
	y := b.Op("Transpose", "y", []string{x}) // read, consumed by z
	z := b.Op("Add", "z", []string{y, y})    // read, consumed by w
	w := b.Op("Neg", "w", []string{z})
	b.Output(w, Float, "T", "B")
	b.Type(y, Float, "T", "B")
	b.Type(z, Float, "T", "B")
	segs, err := Split(b.Model(), Spec{Outputs: []string{w}, Reads: []string{y, z}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{y: y, z: ReadName(z), w: w}
	for i, o := range segs[0].Outputs {
		if segs[0].Fetch[i] != want[o] {
			t.Errorf("output %s fetched as %s, want %s", o, segs[0].Fetch[i], want[o])
		}
	}
}
