package graphs

import (
	"slices"
	"testing"
)

// A read tensor that ends a primitive activation (here a SiLU's Mul) and
// that its segment also consumes goes out through an Identity under
// ReadName; one nothing else consumes goes out as it is.
func TestSplitExposesConsumedReadsThroughIdentity(t *testing.T) {
	b := NewBuilder("reads")
	x := b.Input("x", Float, "B", "T")
	s := b.Op("Sigmoid", "s", []string{x})
	y := b.Op("Mul", "y", []string{x, s}) // read, consumed by z
	z := b.Op("Neg", "z", []string{y})
	w := b.Op("Abs", "w", []string{z}) // read, consumed by nothing
	b.Output(w, Float, "B", "T")
	for _, n := range []string{s, y, z} {
		b.Type(n, Float, "B", "T")
	}
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

// Which consumed read tensors go out through an Identity: the last nodes of
// primitive norms and activations do; a residual Add, a MatMul's bias Add,
// a scaling Mul, an activation op, a Transpose and a fused norm's output go
// out as they are.
func TestSplitCopiesOnlyPatternTails(t *testing.T) {
	b := NewBuilder("reads")
	x := b.Input("x", Float, "B", "D")
	type read struct {
		name string
		copy bool
	}
	var reads []read
	add := func(name string, copy bool) string {
		b.Type(name, Float, "B", "D")
		reads = append(reads, read{name, copy})
		return name
	}
	two := b.ConstF32("two", nil, 2)
	half := b.ConstF32("half", nil, 0.5)
	eps := b.ConstF32("eps", nil, 1e-5)
	gamma := b.ConstF32("gamma", []int64{1}, 1.5)
	beta := b.ConstF32("beta", []int64{1}, 0.25)
	w := b.ConstF32("w", []int64{1, 1}, 3)
	axes := b.ConstI64("axes", []int64{1}, -1)

	// A primitive LayerNorm, read at its end: ...Sqrt, Div, Mul, Add.
	mean := b.Op("ReduceMean", "mean", []string{x, axes})
	b.Type(mean, Float, "B", "1")
	cen := b.Op("Sub", "cen", []string{x, mean})
	b.Type(cen, Float, "B", "D")
	sq := b.Op("Pow", "sq", []string{cen, two})
	b.Type(sq, Float, "B", "D")
	v := b.Op("ReduceMean", "var", []string{sq, axes})
	b.Type(v, Float, "B", "1")
	ve := b.Op("Add", "ve", []string{v, eps})
	b.Type(ve, Float, "B", "1")
	sd := b.Op("Sqrt", "sd", []string{ve})
	b.Type(sd, Float, "B", "1")
	nrm := b.Op("Div", "nrm", []string{cen, sd})
	b.Type(nrm, Float, "B", "D")
	sc := b.Op("Mul", "sc", []string{nrm, gamma})
	b.Type(sc, Float, "B", "D")
	ln := add(b.Op("Add", "ln", []string{sc, beta}), true)
	// A MatMul and its bias, then a residual Add.
	mm := b.Op("MatMul", "mm", []string{ln, w})
	b.Type(mm, Float, "B", "D")
	pre := add(b.Op("Add", "pre", []string{mm, beta}), false)
	// A tanh GELU, read at its last Mul.
	cube := b.Op("Pow", "cube", []string{pre, b.ConstF32("three", nil, 3)})
	b.Type(cube, Float, "B", "D")
	th := b.Op("Tanh", "th", []string{cube})
	b.Type(th, Float, "B", "D")
	one := b.Op("Add", "one", []string{th, b.ConstF32("unit", nil, 1)})
	b.Type(one, Float, "B", "D")
	hx := b.Op("Mul", "hx", []string{pre, half})
	b.Type(hx, Float, "B", "D")
	gelu := add(b.Op("Mul", "gelu", []string{hx, one}), true)
	res := add(b.Op("Add", "res", []string{gelu, x}), false)
	scaled := add(b.Op("Mul", "scaled", []string{res, half}), false)
	relu := add(b.Op("Relu", "relu", []string{scaled}), false)
	tr := add(b.Op("Transpose", "tr", []string{relu}), false)
	fused := add(b.Op("LayerNormalization", "fused", []string{tr, gamma, beta}), false)
	out := b.Op("Neg", "out", []string{fused})
	b.Output(out, Float, "B", "D")

	var names []string
	for _, r := range reads {
		names = append(names, r.name)
	}
	segs, err := Split(b.Model(), Spec{Outputs: []string{out}, Reads: names})
	if err != nil {
		t.Fatal(err)
	}
	fetch := map[string]string{}
	for _, sg := range segs {
		for i, o := range sg.Outputs {
			fetch[o] = sg.Fetch[i]
		}
	}
	for _, r := range reads {
		want := r.name
		if r.copy {
			want = ReadName(r.name)
		}
		if fetch[r.name] != want {
			t.Errorf("read %s fetched as %q, want %q", r.name, fetch[r.name], want)
		}
	}
}
