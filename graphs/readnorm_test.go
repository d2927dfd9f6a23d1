package graphs

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
)

// normGraph builds x -> primitive LayerNorm -> out -> Relu, as the GPT-2
// exporter writes it; edit changes it before the model is made.
type normGraph struct {
	swapEps, swapGain, rawEps bool
	gainInput                 bool // the gain a graph input, not an initializer
	extraPowUser              bool // the squares also feed another output
	pow                       float32
	scalarGain                bool // a one-element gain the Mul broadcasts
}

func (ng normGraph) build() *onnxpb.ModelProto {
	b := NewBuilder("ln")
	x := b.Input("x", Float, "B", "T", "4")
	ax := []*onnxpb.AttributeProto{AttrInts("axes", -1), AttrInt("keepdims", 1)}
	mean := b.Op("ReduceMean", "mean", []string{x}, ax...)
	xc := b.Op("Sub", "xc", []string{x, mean})
	pw := ng.pow
	if pw == 0 {
		pw = 2
	}
	sq := b.Op("Pow", "sq", []string{xc, b.ConstF32("two", nil, pw)})
	v := b.Op("ReduceMean", "var", []string{sq}, ax...)
	eps := "eps"
	if ng.rawEps {
		raw := make([]byte, 4)
		binary.LittleEndian.PutUint32(raw, math.Float32bits(1e-5))
		b.Graph().Initializer = append(b.Graph().Initializer, &onnxpb.TensorProto{Name: proto.String(eps), DataType: proto.Int32(int32(Float)), RawData: raw})
	} else {
		b.ConstF32(eps, nil, 1e-5)
	}
	addIn := []string{v, eps}
	if ng.swapEps {
		addIn = []string{eps, v}
	}
	s := b.Op("Sqrt", "s", []string{b.Op("Add", "ve", addIn)})
	y := b.Op("Div", "y", []string{xc, s})
	gain := "gain"
	if ng.gainInput {
		b.Input(gain, Float, "4")
	} else if ng.scalarGain {
		b.ConstF32(gain, []int64{1}, 3)
	} else {
		b.ConstF32(gain, []int64{4}, 1, 2, 3, 4)
	}
	mulIn := []string{y, gain}
	if ng.swapGain {
		mulIn = []string{gain, y}
	}
	out := b.Op("Add", "out", []string{b.Op("Mul", "yg", mulIn), b.ConstF32("bias", []int64{4}, 0, 0, 1, 1)})
	b.Output(b.Op("Relu", "r", []string{out}), Float, "B", "T", "4")
	if ng.extraPowUser {
		b.Output(b.Op("Neg", "negsq", []string{sq}), Float, "B", "T", "4")
	}
	return b.Model()
}

func opTypes(m *onnxpb.ModelProto) []string {
	var ops []string
	for _, n := range m.GetGraph().GetNode() {
		ops = append(ops, n.GetOpType())
	}
	return ops
}

func TestFuseReadNorms(t *testing.T) {
	for _, tc := range []struct {
		name        string
		g           normGraph
		reads, cuts []string
		opset       int64
		fused       bool
	}{
		{"centred read", normGraph{}, []string{"xc"}, nil, 0, true},
		{"scale read", normGraph{}, []string{"s"}, nil, 0, true},
		{"every inner point and the output read", normGraph{}, []string{"xc", "s", "y", "out"}, nil, 0, true},
		{"operands swapped, eps as raw bytes", normGraph{swapEps: true, swapGain: true, rawEps: true}, []string{"y"}, nil, 0, true},
		{"nothing inside read", normGraph{}, []string{"out", "r"}, nil, 0, false},
		{"no reads", normGraph{}, nil, nil, 0, false},
		{"inner point written", normGraph{}, []string{"s"}, []string{"xc"}, 0, false},
		{"normalised point written", normGraph{}, []string{"xc"}, []string{"y"}, 0, false},
		{"intermediate read", normGraph{}, []string{"xc", "sq"}, nil, 0, false},
		{"intermediate used elsewhere", normGraph{extraPowUser: true}, []string{"xc"}, nil, 0, false},
		{"gain not a weight", normGraph{gainInput: true}, []string{"xc"}, nil, 0, false},
		{"not a square", normGraph{pow: 3}, []string{"xc"}, nil, 0, false},
		{"broadcast gain", normGraph{scalarGain: true}, []string{"xc"}, nil, 0, false},
		{"opset without LayerNormalization", normGraph{}, []string{"xc"}, nil, 16, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.g.build()
			if tc.opset != 0 {
				m.OpsetImport[0].Version = proto.Int64(tc.opset)
			}
			before := proto.Clone(m)
			got, n := FuseReadNorms(m, tc.reads, tc.cuts)
			if !proto.Equal(m, before) {
				t.Fatal("the model given was changed")
			}
			if !tc.fused {
				if n != 0 || got != m {
					t.Fatalf("rewrote %d norms: %v", n, opTypes(got))
				}
				return
			}
			if n != 1 {
				t.Fatalf("rewrote %d norms, want 1: %v", n, opTypes(got))
			}
			ops := opTypes(got)
			for _, gone := range []string{"ReduceMean", "Pow", "Sqrt", "Div"} {
				if slices.Contains(ops, gone) {
					t.Errorf("%s left: %v", gone, ops)
				}
			}
			var ln *onnxpb.NodeProto
			made := map[string]string{}
			for _, nd := range got.GetGraph().GetNode() {
				for _, o := range nd.GetOutput() {
					made[o] = nd.GetOpType()
				}
				if nd.GetOpType() == "LayerNormalization" {
					ln = nd
				}
			}
			if ln == nil {
				t.Fatalf("no LayerNormalization: %v", ops)
			}
			if !slices.Equal(ln.GetInput(), []string{"x", "gain", "bias"}) || ln.GetOutput()[0] != "out" || ln.GetOutput()[1] != "mean" || len(ln.GetOutput()) != 3 {
				t.Errorf("LayerNormalization %v -> %v", ln.GetInput(), ln.GetOutput())
			}
			if a := attr(ln, "epsilon"); a == nil || a.GetF() != 1e-5 {
				t.Errorf("epsilon %v, want 1e-5", a)
			}
			if a := attr(ln, "axis"); a == nil || a.GetI() != -1 {
				t.Errorf("axis %v, want -1", a)
			}
			want := map[string]string{"xc": "Sub", "y": "Mul", "s": "Reciprocal", "out": "LayerNormalization", "r": "Relu"}
			for tensor, op := range want {
				if made[tensor] != op {
					t.Errorf("%s made by %q, want %s", tensor, made[tensor], op)
				}
			}
			if _, err := TopoOrder(got.GetGraph()); err != nil {
				t.Errorf("rewritten graph: %v", err)
			}
			// Split keeps only what is read: the recomputations nobody
			// reads are dropped.
			segs, err := Split(got, Spec{Outputs: []string{"r"}, Reads: tc.reads, Cuts: tc.cuts})
			if err != nil {
				t.Fatal(err)
			}
			kept := map[string]bool{}
			for _, nd := range segs[0].Model.GetGraph().GetNode() {
				for _, o := range nd.GetOutput() {
					kept[o] = true
				}
			}
			needY := slices.Contains(tc.reads, "y")
			if kept["y"] != needY || kept["s"] != slices.Contains(tc.reads, "s") || kept["xc"] != (needY || slices.Contains(tc.reads, "xc")) {
				t.Errorf("segment computes xc %v, y %v, s %v for reads %v", kept["xc"], kept["y"], kept["s"], tc.reads)
			}
		})
	}
}

// FuzzFuseReadNorms feeds FuseReadNorms parsed models with the first half
// of their node outputs read: it must not panic, and what it returns must
// still sort.
func FuzzFuseReadNorms(f *testing.F) {
	for _, g := range []normGraph{{}, {swapEps: true, swapGain: true, rawEps: true}, {extraPowUser: true}} {
		if seed, err := proto.Marshal(g.build()); err == nil {
			f.Add(seed)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, ok := fuzzModel(data)
		if !ok {
			return
		}
		if _, err := TopoOrder(m.GetGraph()); err != nil {
			return
		}
		var reads []string
		for _, nd := range m.GetGraph().GetNode() {
			reads = append(reads, nd.GetOutput()...)
		}
		got, _ := FuseReadNorms(m, reads[:len(reads)/2], nil)
		if _, err := TopoOrder(got.GetGraph()); err != nil {
			t.Fatalf("rewritten graph: %v", err)
		}
	})
}
