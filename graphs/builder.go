package graphs

import (
	"fmt"
	"math"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Opset is the ONNX operator set the project's own graphs use.
const Opset = 17

// IRVersion is the ONNX IR version written (IR 8 goes with opset 17).
const IRVersion = 8

// Element types used here.
const (
	Float = onnxpb.TensorProto_FLOAT
	Int64 = onnxpb.TensorProto_INT64
	Bool  = onnxpb.TensorProto_BOOL
)

// Builder accumulates one graph. Names given by the caller are kept as they
// are; generated names are prefix + op + counter.
type Builder struct {
	g      *onnxpb.GraphProto
	prefix string
	n      int
	types  map[string]bool
}

// NewBuilder starts a graph.
func NewBuilder(name string) *Builder {
	return &Builder{g: &onnxpb.GraphProto{Name: proto.String(name)}, types: map[string]bool{}}
}

// SetPrefix sets the prefix of generated tensor and node names.
func (b *Builder) SetPrefix(p string) { b.prefix = p }

// Graph returns the graph built so far.
func (b *Builder) Graph() *onnxpb.GraphProto { return b.g }

// Model wraps the graph in a model with the project's opset.
func (b *Builder) Model() *onnxpb.ModelProto {
	return NewModel(b.g)
}

// NewModel wraps a graph in a model with the project's opset and IR version.
func NewModel(g *onnxpb.GraphProto) *onnxpb.ModelProto {
	return &onnxpb.ModelProto{
		IrVersion:    proto.Int64(IRVersion),
		ProducerName: proto.String("onnx-tdb"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(Opset)}},
		Graph:        g,
	}
}

// ValueInfo makes a typed value description; dims are symbolic names or
// decimal sizes ("B", "T", "64").
func ValueInfo(name string, elem onnxpb.TensorProto_DataType, dims ...string) *onnxpb.ValueInfoProto {
	tt := &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(elem))}
	if dims != nil {
		tt.Shape = &onnxpb.TensorShapeProto{}
		for _, d := range dims {
			dim := &onnxpb.TensorShapeProto_Dimension{}
			var v int64
			if _, err := fmt.Sscanf(d, "%d", &v); err == nil && fmt.Sprint(v) == d {
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}
			} else {
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d}
			}
			tt.Shape.Dim = append(tt.Shape.Dim, dim)
		}
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}}}
}

// Input declares a graph input.
func (b *Builder) Input(name string, elem onnxpb.TensorProto_DataType, dims ...string) string {
	b.g.Input = append(b.g.Input, ValueInfo(name, elem, dims...))
	b.types[name] = true
	return name
}

// Output declares a graph output.
func (b *Builder) Output(name string, elem onnxpb.TensorProto_DataType, dims ...string) {
	b.g.Output = append(b.g.Output, ValueInfo(name, elem, dims...))
}

// Type records the type and symbolic shape of an intermediate tensor.
func (b *Builder) Type(name string, elem onnxpb.TensorProto_DataType, dims ...string) string {
	if !b.types[name] {
		b.g.ValueInfo = append(b.g.ValueInfo, ValueInfo(name, elem, dims...))
		b.types[name] = true
	}
	return name
}

func (b *Builder) fresh(op string) string {
	b.n++
	return fmt.Sprintf("%s%s_%d", b.prefix, op, b.n)
}

// Op adds a node with one output and returns the output's name; out == ""
// generates one.
func (b *Builder) Op(op, out string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	if out == "" {
		out = b.fresh(op)
	}
	b.OpN(op, []string{out}, inputs, attrs...)
	return out
}

// OpN adds a node with several outputs.
func (b *Builder) OpN(op string, outs, inputs []string, attrs ...*onnxpb.AttributeProto) {
	b.n++
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{
		Name:      proto.String(fmt.Sprintf("%s%s#%d", b.prefix, op, b.n)),
		OpType:    proto.String(op),
		Input:     inputs,
		Output:    outs,
		Attribute: attrs,
	})
}

// ConstF32 adds a float32 constant initializer stored in the graph.
func (b *Builder) ConstF32(name string, dims []int64, vals ...float32) string {
	if name == "" {
		name = b.fresh("c")
	}
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{
		Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(Float)), FloatData: vals,
	})
	return name
}

// ConstI64 adds an int64 constant initializer stored in the graph.
func (b *Builder) ConstI64(name string, dims []int64, vals ...int64) string {
	if name == "" {
		name = b.fresh("c")
	}
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{
		Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(Int64)), Int64Data: vals,
	})
	return name
}

// External adds a float32 initializer whose data lives in an external file.
func (b *Builder) External(name string, dims []int64, location string, offset, length int64) string {
	b.g.Initializer = append(b.g.Initializer, ExternalTensor(name, dims, location, offset, length))
	return name
}

// ExternalTensor describes float32 data stored in a file beside the model.
func ExternalTensor(name string, dims []int64, location string, offset, length int64) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{
		Name:         proto.String(name),
		Dims:         dims,
		DataType:     proto.Int32(int32(Float)),
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
		ExternalData: []*onnxpb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(location)},
			{Key: proto.String("offset"), Value: proto.String(fmt.Sprint(offset))},
			{Key: proto.String("length"), Value: proto.String(fmt.Sprint(length))},
		},
	}
}

// AttrInt is an integer attribute.
func AttrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

// AttrInts is an integer-list attribute.
func AttrInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

// AttrFloat is a float attribute.
func AttrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

// AttrTensor is a tensor attribute (ConstantOfShape's value).
func AttrTensor(name string, t *onnxpb.TensorProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: t}
}

// NegInf is float32 -inf.
var NegInf = float32(math.Inf(-1))
