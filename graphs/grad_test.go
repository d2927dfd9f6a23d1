package graphs_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/internal/ortenv"
	"github.com/onnx-tdb/onnx-tdb/runtime"
	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"
)

// value is a test tensor: exactly one of the slices is set.
type value struct {
	shape []int64
	f64   []float64
	f32   []float32
	i64   []int64
	b     []bool
}

func (v value) ort() (ort.Value, error) {
	s := ort.NewShape(v.shape...)
	switch {
	case v.f64 != nil:
		return ort.NewTensor(s, v.f64)
	case v.f32 != nil:
		return ort.NewTensor(s, v.f32)
	case v.i64 != nil:
		return ort.NewTensor(s, v.i64)
	case v.b != nil:
		return ort.NewTensor(s, v.b)
	}
	return nil, fmt.Errorf("empty value")
}

func initORT(t testing.TB) {
	t.Helper()
	if err := ortenv.ApplyProcessDefaults(); err != nil {
		t.Fatal(err)
	}
	if err := runtime.Init(); err != nil {
		t.Skipf("SKIP: onnxruntime unavailable: %v", err)
	}
}

// run executes a model once on the CPU.
func run(t testing.TB, m *onnxpb.ModelProto, in map[string]value, outs []string) map[string]value {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, vi := range m.GetGraph().GetInput() {
		names = append(names, vi.GetName())
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer so.Destroy()
	so.SetIntraOpNumThreads(1)
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(b, names, outs, so)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer s.Destroy()
	ins := make([]ort.Value, len(names))
	for i, n := range names {
		v, ok := in[n]
		if !ok {
			t.Fatalf("no value for input %s", n)
		}
		if ins[i], err = v.ort(); err != nil {
			t.Fatal(err)
		}
		defer ins[i].Destroy()
	}
	res := make([]ort.Value, len(outs))
	if err := s.Run(ins, res); err != nil {
		t.Fatalf("run: %v", err)
	}
	out := map[string]value{}
	for i, n := range outs {
		switch x := res[i].(type) {
		case *ort.Tensor[float64]:
			out[n] = value{shape: x.GetShape(), f64: append([]float64(nil), x.GetData()...)}
		case *ort.Tensor[float32]:
			out[n] = value{shape: x.GetShape(), f32: append([]float32(nil), x.GetData()...)}
		default:
			t.Fatalf("output %s: type %T", n, res[i])
		}
		res[i].Destroy()
	}
	return out
}

// input describes one graph input of an op case.
type input struct {
	name  string
	shape []int64
	dims  []string // declared dims (symbolic); default: the numeric shape
	elem  onnxpb.TensorProto_DataType
	i64   []int64
	b     []bool
	wrt   bool
	gen   func(r *rand.Rand) float64 // value generator for float inputs
}

func fIn(name string, shape ...int64) input {
	return input{name: name, shape: shape, elem: onnxpb.TensorProto_DOUBLE, wrt: true}
}

type opCase struct {
	name   string
	inputs []input
	build  func(b *graphs.Builder, in []string) string
}

func numel(s []int64) int {
	n := 1
	for _, d := range s {
		n *= int(d)
	}
	return n
}

func (c opCase) model() *onnxpb.ModelProto {
	b := graphs.NewBuilder(c.name)
	var names []string
	for _, in := range c.inputs {
		dims := in.dims
		if dims == nil {
			for _, d := range in.shape {
				dims = append(dims, fmt.Sprint(d))
			}
		}
		names = append(names, b.Input(in.name, in.elem, dims...))
	}
	y := c.build(b, names)
	b.Output(y, onnxpb.TensorProto_DOUBLE)
	return b.Model()
}

func constF64(b *graphs.Builder, name string, dims []int64, vals ...float64) string {
	b.Graph().Initializer = append(b.Graph().Initializer, &onnxpb.TensorProto{
		Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(onnxpb.TensorProto_DOUBLE)), DoubleData: vals,
	})
	return name
}

func op(b *graphs.Builder, o string, in []string, attrs ...*onnxpb.AttributeProto) string {
	return b.Op(o, "", in, attrs...)
}

func randVals(r *rand.Rand, n int, gen func(*rand.Rand) float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		if gen != nil {
			v[i] = gen(r)
		} else {
			v[i] = r.Float64()*2 - 1
		}
	}
	return v
}

// away keeps values at least 0.1 from zero (for kinks such as Relu).
func away(r *rand.Rand) float64 {
	x := 0.1 + 0.9*r.Float64()
	if r.IntN(2) == 0 {
		return -x
	}
	return x
}

func positive(r *rand.Rand) float64 { return 0.5 + r.Float64() }

func opCases() []opCase {
	idx := func(vals ...int64) []int64 { return vals }
	return []opCase{
		{"Identity", []input{fIn("x", 2, 3)}, func(b *graphs.Builder, in []string) string { return op(b, "Identity", in) }},
		{"Neg", []input{fIn("x", 2, 3)}, func(b *graphs.Builder, in []string) string { return op(b, "Neg", in) }},
		{"Cast", []input{{name: "x", shape: []int64{2, 3}, elem: onnxpb.TensorProto_FLOAT, wrt: true}}, func(b *graphs.Builder, in []string) string {
			return op(b, "Cast", in, graphs.AttrInt("to", int64(onnxpb.TensorProto_DOUBLE)))
		}},
		{"Add broadcast", []input{fIn("a", 2, 3, 4), fIn("b", 3, 1)}, func(b *graphs.Builder, in []string) string { return op(b, "Add", in) }},
		{"Sub broadcast", []input{fIn("a", 2, 1, 4), fIn("b", 2, 3, 1)}, func(b *graphs.Builder, in []string) string { return op(b, "Sub", in) }},
		{"Sum", []input{fIn("a", 2, 3), fIn("b", 3), fIn("c", 2, 1)}, func(b *graphs.Builder, in []string) string { return op(b, "Sum", in) }},
		{"Mul broadcast", []input{fIn("a", 2, 3, 4), fIn("b", 4)}, func(b *graphs.Builder, in []string) string { return op(b, "Mul", in) }},
		{"Mul same input", []input{fIn("a", 3, 2)}, func(b *graphs.Builder, in []string) string { return op(b, "Mul", []string{in[0], in[0]}) }},
		{"Mul constant", []input{fIn("a", 3, 2)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Mul", []string{in[0], constF64(b, "k", nil, 0.7)})
		}},
		{"Div", []input{fIn("a", 2, 3), {name: "b", shape: []int64{2, 1}, elem: onnxpb.TensorProto_DOUBLE, wrt: true, gen: positive}}, func(b *graphs.Builder, in []string) string { return op(b, "Div", in) }},
		{"Pow 2", []input{fIn("a", 2, 3)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Pow", []string{in[0], constF64(b, "e", nil, 2)})
		}},
		{"Pow 3", []input{fIn("a", 2, 3)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Pow", []string{in[0], constF64(b, "e", nil, 3)})
		}},
		{"Pow variable", []input{{name: "a", shape: []int64{2, 3}, elem: onnxpb.TensorProto_DOUBLE, wrt: true, gen: positive}, fIn("e", 3)}, func(b *graphs.Builder, in []string) string { return op(b, "Pow", in) }},
		{"Sqrt", []input{{name: "x", shape: []int64{5}, elem: onnxpb.TensorProto_DOUBLE, wrt: true, gen: positive}}, func(b *graphs.Builder, in []string) string { return op(b, "Sqrt", in) }},
		{"Exp", []input{fIn("x", 5)}, func(b *graphs.Builder, in []string) string { return op(b, "Exp", in) }},
		{"Log", []input{{name: "x", shape: []int64{5}, elem: onnxpb.TensorProto_DOUBLE, wrt: true, gen: positive}}, func(b *graphs.Builder, in []string) string { return op(b, "Log", in) }},
		{"Tanh", []input{fIn("x", 2, 4)}, func(b *graphs.Builder, in []string) string { return op(b, "Tanh", in) }},
		{"Sigmoid", []input{fIn("x", 2, 4)}, func(b *graphs.Builder, in []string) string { return op(b, "Sigmoid", in) }},
		{"Relu", []input{{name: "x", shape: []int64{3, 4}, elem: onnxpb.TensorProto_DOUBLE, wrt: true, gen: away}}, func(b *graphs.Builder, in []string) string { return op(b, "Relu", in) }},
		{"Max", []input{fIn("a", 3, 4), fIn("b", 4)}, func(b *graphs.Builder, in []string) string { return op(b, "Max", in) }},
		{"Min", []input{fIn("a", 3, 4), fIn("b", 3, 1)}, func(b *graphs.Builder, in []string) string { return op(b, "Min", in) }},
		{"Where", []input{
			{name: "c", shape: []int64{2, 3}, elem: onnxpb.TensorProto_BOOL, b: []bool{true, false, true, false, false, true}},
			fIn("a", 2, 3), fIn("b", 3),
		}, func(b *graphs.Builder, in []string) string { return op(b, "Where", in) }},
		{"Softmax last axis", []input{fIn("x", 2, 3, 5)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Softmax", in, graphs.AttrInt("axis", -1))
		}},
		{"Softmax axis 1", []input{fIn("x", 2, 3, 4)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Softmax", in, graphs.AttrInt("axis", 1))
		}},
		{"ReduceSum keepdims", []input{fIn("x", 2, 3, 4)}, func(b *graphs.Builder, in []string) string {
			return op(b, "ReduceSum", []string{in[0], b.ConstI64("ax", []int64{2}, 0, 2)}, graphs.AttrInt("keepdims", 1))
		}},
		{"ReduceSum dropdims symbolic", []input{{name: "x", shape: []int64{2, 3, 4}, dims: []string{"B", "T", "4"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true}}, func(b *graphs.Builder, in []string) string {
			return op(b, "ReduceSum", []string{in[0], b.ConstI64("ax", []int64{1}, 1)}, graphs.AttrInt("keepdims", 0))
		}},
		{"ReduceMean", []input{fIn("x", 2, 3, 4)}, func(b *graphs.Builder, in []string) string {
			return op(b, "ReduceMean", in, graphs.AttrInts("axes", -1), graphs.AttrInt("keepdims", 1))
		}},
		{"ReduceMean symbolic axis", []input{{name: "x", shape: []int64{2, 3, 4}, dims: []string{"B", "T", "D"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true}}, func(b *graphs.Builder, in []string) string {
			return op(b, "ReduceMean", in, graphs.AttrInts("axes", 1, 2), graphs.AttrInt("keepdims", 0))
		}},
		{"MatMul weight (Gemm path)", []input{{name: "x", shape: []int64{2, 3, 4}, dims: []string{"B", "T", "4"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true}}, func(b *graphs.Builder, in []string) string {
			w := make([]float64, 20)
			for i := range w {
				w[i] = math.Sin(float64(i))
			}
			return op(b, "MatMul", []string{in[0], constF64(b, "w", []int64{4, 5}, w...)})
		}},
		{"MatMul batched", []input{fIn("a", 2, 3, 4, 5), fIn("b", 2, 3, 5, 2)}, func(b *graphs.Builder, in []string) string { return op(b, "MatMul", in) }},
		{"MatMul broadcast batch", []input{fIn("a", 2, 3, 4), fIn("b", 4, 2)}, func(b *graphs.Builder, in []string) string { return op(b, "MatMul", in) }},
		{"Gemm", []input{fIn("a", 3, 4), fIn("b", 5, 4), fIn("c", 5)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Gemm", in, graphs.AttrInt("transB", 1), graphs.AttrFloat("alpha", 0.5), graphs.AttrFloat("beta", 2))
		}},
		{"Gemm transA", []input{fIn("a", 4, 3), fIn("b", 4, 5), fIn("c", 3, 1)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Gemm", in, graphs.AttrInt("transA", 1))
		}},
		{"Transpose", []input{fIn("x", 2, 3, 4)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Transpose", in, graphs.AttrInts("perm", 1, 2, 0))
		}},
		{"Reshape split heads", []input{{name: "x", shape: []int64{2, 3, 6}, dims: []string{"B", "T", "6"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true}}, func(b *graphs.Builder, in []string) string {
			return op(b, "Reshape", []string{in[0], b.ConstI64("s", []int64{4}, 0, 0, 2, 3)})
		}},
		{"Reshape flatten", []input{fIn("x", 2, 3, 4)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Reshape", []string{in[0], b.ConstI64("s", []int64{2}, -1, 4)})
		}},
		{"Squeeze", []input{fIn("x", 2, 1, 3)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Squeeze", []string{in[0], b.ConstI64("ax", []int64{1}, 1)})
		}},
		{"Unsqueeze", []input{fIn("x", 2, 3)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Unsqueeze", []string{in[0], b.ConstI64("ax", []int64{2}, 0, 3)})
		}},
		{"Concat static", []input{fIn("a", 2, 3), fIn("b", 2, 1), fIn("c", 2, 2)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Concat", in, graphs.AttrInt("axis", 1))
		}},
		{"Concat symbolic (KV cache)", []input{
			{name: "past", shape: []int64{2, 2, 3}, dims: []string{"B", "P", "3"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true},
			{name: "new", shape: []int64{2, 3, 3}, dims: []string{"B", "T", "3"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true},
			{name: "more", shape: []int64{2, 1, 3}, dims: []string{"B", "U", "3"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true},
		}, func(b *graphs.Builder, in []string) string {
			return op(b, "Concat", in, graphs.AttrInt("axis", 1))
		}},
		{"Concat with an empty piece (empty KV cache)", []input{
			{name: "past", shape: []int64{2, 0, 3}, dims: []string{"B", "P", "3"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true},
			{name: "new", shape: []int64{2, 3, 3}, dims: []string{"B", "T", "3"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true},
		}, func(b *graphs.Builder, in []string) string {
			return op(b, "Concat", in, graphs.AttrInt("axis", 1))
		}},
		{"Concat static then symbolic", []input{
			fIn("a", 2, 2, 3),
			{name: "b", shape: []int64{2, 3, 3}, dims: []string{"B", "T", "3"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true},
			fIn("c", 2, 1, 3),
		}, func(b *graphs.Builder, in []string) string {
			return op(b, "Concat", in, graphs.AttrInt("axis", 1))
		}},
		{"Expand", []input{fIn("x", 3, 1)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Expand", []string{in[0], b.ConstI64("s", []int64{3}, 2, 3, 4)})
		}},
		{"TopK", []input{{name: "x", shape: []int64{3, 6}, elem: onnxpb.TensorProto_DOUBLE, wrt: true}}, func(b *graphs.Builder, in []string) string {
			outs := []string{"vals", "idx"}
			b.OpN("TopK", outs, []string{in[0], b.ConstI64("k", []int64{1}, 2)}, graphs.AttrInt("axis", -1))
			return "vals"
		}},
		{"TopK + ScatterElements (SAE)", []input{{name: "x", shape: []int64{3, 6}, elem: onnxpb.TensorProto_DOUBLE, wrt: true, gen: away}}, func(b *graphs.Builder, in []string) string {
			b.OpN("TopK", []string{"vals", "idx"}, []string{in[0], b.ConstI64("k", []int64{1}, 3)}, graphs.AttrInt("axis", -1))
			act := op(b, "Relu", []string{"vals"})
			zeros := op(b, "Mul", []string{in[0], constF64(b, "zero", nil, 0)})
			return op(b, "ScatterElements", []string{zeros, "idx", act}, graphs.AttrInt("axis", -1))
		}},
		{"ScatterElements", []input{fIn("data", 3, 4), {name: "idx", shape: []int64{3, 2}, elem: onnxpb.TensorProto_INT64, i64: idx(0, 2, 3, 1, 1, 0)}, fIn("upd", 3, 2)}, func(b *graphs.Builder, in []string) string {
			return op(b, "ScatterElements", in, graphs.AttrInt("axis", 1))
		}},
		{"Cos", []input{fIn("x", 2, 3)}, func(b *graphs.Builder, in []string) string { return op(b, "Cos", in) }},
		{"Sin", []input{fIn("x", 2, 3)}, func(b *graphs.Builder, in []string) string { return op(b, "Sin", in) }},
		{"Slice static (rotary halves)", []input{fIn("x", 2, 3, 6)}, func(b *graphs.Builder, in []string) string {
			lo := op(b, "Slice", []string{in[0], b.ConstI64("s0", []int64{1}, 0), b.ConstI64("e0", []int64{1}, 3), b.ConstI64("a0", []int64{1}, -1)})
			hi := op(b, "Slice", []string{in[0], b.ConstI64("s1", []int64{1}, 3), b.ConstI64("e1", []int64{1}, math.MaxInt64), b.ConstI64("a1", []int64{1}, -1)})
			return op(b, "Concat", []string{op(b, "Neg", []string{hi}), lo}, graphs.AttrInt("axis", -1))
		}},
		{"Slice symbolic, two axes", []input{{name: "x", shape: []int64{4, 5}, dims: []string{"T", "K"}, elem: onnxpb.TensorProto_DOUBLE, wrt: true}}, func(b *graphs.Builder, in []string) string {
			return op(b, "Slice", []string{in[0], b.ConstI64("s", []int64{2}, 1, -3), b.ConstI64("e", []int64{2}, -1, 100), b.ConstI64("a", []int64{2}, 0, 1)})
		}},
		{"Einsum attention", []input{fIn("q", 2, 3, 2, 4), fIn("k", 2, 5, 2, 4)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Einsum", in, &onnxpb.AttributeProto{Name: proto.String("equation"), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte("bqhd,bkhd->bhqk")})
		}},
		{"Einsum weighted sum", []input{fIn("p", 2, 2, 3, 5), fIn("v", 2, 5, 2, 4)}, func(b *graphs.Builder, in []string) string {
			return op(b, "Einsum", in, &onnxpb.AttributeProto{Name: proto.String("equation"), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte("bhqk,bkhd->bqhd")})
		}},
		{"GatherElements", []input{fIn("data", 3, 4), {name: "idx", shape: []int64{3, 2}, elem: onnxpb.TensorProto_INT64, i64: idx(0, 0, 3, 1, 2, 2)}}, func(b *graphs.Builder, in []string) string {
			return op(b, "GatherElements", in, graphs.AttrInt("axis", 1))
		}},
	}
}

// TestVJPFiniteDifferences checks every operator's gradient rule against
// central finite differences in float64: the backward graph's gradient of
// L = sum(seed * y) against (L(x+h) - L(x-h)) / 2h for every input element.
func TestVJPFiniteDifferences(t *testing.T) {
	initORT(t)
	for ci, c := range opCases() {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 7))
			m := c.model()
			y := m.GetGraph().GetOutput()[0].GetName()
			vals := map[string]value{}
			var wrt []string
			for _, in := range c.inputs {
				v := value{shape: in.shape}
				switch {
				case in.i64 != nil:
					v.i64 = in.i64
				case in.b != nil:
					v.b = in.b
				case in.elem == onnxpb.TensorProto_FLOAT:
					for _, x := range randVals(r, numel(in.shape), in.gen) {
						v.f32 = append(v.f32, float32(x))
					}
				default:
					v.f64 = randVals(r, numel(in.shape), in.gen)
				}
				vals[in.name] = v
				if in.wrt {
					wrt = append(wrt, in.name)
				}
			}
			y0 := run(t, m, vals, []string{y})[y]
			seed := value{shape: y0.shape, f64: randVals(r, len(y0.f64), nil)}
			gr, err := graphs.Backward(m, graphs.GradSpec{Seeds: []string{y}, Wrt: wrt})
			if err != nil {
				t.Fatal(err)
			}
			if len(gr.Zero) > 0 {
				t.Fatalf("no gradient reaches %v", gr.Zero)
			}
			bin := map[string]value{graphs.SeedName(y): seed}
			for _, f := range gr.Forward {
				bin[f] = vals[f]
			}
			got := run(t, gr.Model, bin, gr.Outputs)
			loss := func(in map[string]value) float64 {
				out := run(t, m, in, []string{y})[y]
				s := 0.0
				for i, x := range out.f64 {
					s += x * seed.f64[i]
				}
				return s
			}
			const h = 1e-6
			for _, w := range wrt {
				g := got[graphs.GradName(w)]
				x := vals[w]
				if fmt.Sprint(g.shape) != fmt.Sprint(x.shape) {
					t.Fatalf("d/d%s: shape %v, want %v", w, g.shape, x.shape)
				}
				n := len(x.f64) + len(x.f32)
				for i := 0; i < n; i++ {
					num := fd(x, i, h, func(xx value) float64 {
						in := map[string]value{}
						for k, v := range vals {
							in[k] = v
						}
						in[w] = xx
						return loss(in)
					})
					var an float64
					if g.f64 != nil {
						an = g.f64[i]
					} else {
						an = float64(g.f32[i])
					}
					tol := 1e-6 + 1e-5*math.Abs(num)
					if x.f32 != nil {
						tol = 2e-3 + 1e-2*math.Abs(num)
					}
					if math.Abs(an-num) > tol || math.IsNaN(an) {
						t.Errorf("d/d%s[%d]: analytic %.9g, finite difference %.9g", w, i, an, num)
					}
				}
			}
		})
	}
}

// fd is the central difference of f at element i of x.
func fd(x value, i int, h float64, f func(value) float64) float64 {
	if x.f32 != nil {
		h = 1e-2
		p := value{shape: x.shape, f32: append([]float32(nil), x.f32...)}
		m := value{shape: x.shape, f32: append([]float32(nil), x.f32...)}
		p.f32[i] += float32(h)
		m.f32[i] -= float32(h)
		return (f(p) - f(m)) / (float64(p.f32[i]) - float64(m.f32[i]))
	}
	p := value{shape: x.shape, f64: append([]float64(nil), x.f64...)}
	m := value{shape: x.shape, f64: append([]float64(nil), x.f64...)}
	p.f64[i] += h
	m.f64[i] -= h
	return (f(p) - f(m)) / (2 * h)
}

// TestEveryRuleHasACase keeps the table in step with the rule set.
func TestEveryRuleHasACase(t *testing.T) {
	covered := map[string]bool{"Dropout": true} // Dropout shares Identity's rule
	for _, c := range opCases() {
		for _, n := range c.model().GetGraph().GetNode() {
			covered[n.GetOpType()] = true
		}
	}
	for _, op := range graphs.DifferentiableOps() {
		if !covered[op] {
			t.Errorf("operator %s has a gradient rule but no finite-difference case", op)
		}
	}
}

func TestBackwardErrors(t *testing.T) {
	b := graphs.NewBuilder("e")
	x := b.Input("x", onnxpb.TensorProto_FLOAT, "3")
	y := b.Op("Erf", "y", []string{x})
	b.Output(y, onnxpb.TensorProto_FLOAT, "3")
	_, err := graphs.Backward(b.Model(), graphs.GradSpec{Seeds: []string{y}, Wrt: []string{x}})
	if err == nil || !strings.Contains(err.Error(), "Erf") {
		t.Fatalf("want a no-rule error naming Erf, got %v", err)
	}
	if _, err := graphs.Backward(b.Model(), graphs.GradSpec{Seeds: []string{"nope"}, Wrt: []string{x}}); err == nil {
		t.Fatal("unknown seed accepted")
	}
}

// TestChainedWrtOutputs: y = Identity(Identity(x)) with gradients asked
// at x, the middle tensor and y: every output exists and equals the seed.
func TestChainedWrtOutputs(t *testing.T) {
	initORT(t)
	b := graphs.NewBuilder("chain")
	x := b.Input("x", onnxpb.TensorProto_DOUBLE, "3")
	mid := b.Op("Identity", "mid", []string{x})
	y := b.Op("Identity", "y", []string{mid})
	b.Output(y, onnxpb.TensorProto_DOUBLE, "3")
	gr, err := graphs.Backward(b.Model(), graphs.GradSpec{Seeds: []string{y}, Wrt: []string{x, mid, y}})
	if err != nil {
		t.Fatal(err)
	}
	seed := value{shape: []int64{3}, f64: []float64{1, 2, 3}}
	got := run(t, gr.Model, map[string]value{graphs.SeedName(y): seed}, gr.Outputs)
	for _, w := range []string{x, mid, y} {
		if fmt.Sprint(got[graphs.GradName(w)].f64) != "[1 2 3]" {
			t.Errorf("d/d%s = %v", w, got[graphs.GradName(w)].f64)
		}
	}
}
