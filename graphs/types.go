package graphs

import (
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
)

// InferTypes gives the element type of every tensor of a model: from graph
// inputs, initializers and value infos where present, else by propagating
// through the nodes with each operator's output-type rule. Tensors of unknown
// operators get their first input's type.
func InferTypes(m *onnxpb.ModelProto) map[string]onnxpb.TensorProto_DataType {
	g := m.GetGraph()
	types := map[string]onnxpb.TensorProto_DataType{}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetInput(), g.GetValueInfo(), g.GetOutput()} {
		for _, v := range list {
			if t := v.GetType().GetTensorType().GetElemType(); t != 0 {
				types[v.GetName()] = onnxpb.TensorProto_DataType(t)
			}
		}
	}
	for _, t := range g.GetInitializer() {
		types[t.GetName()] = onnxpb.TensorProto_DataType(t.GetDataType())
	}
	order, err := TopoOrder(g)
	if err != nil {
		return types
	}
	nodes := g.GetNode()
	for _, i := range order {
		n := nodes[i]
		outs := outputTypes(n, types)
		for j, o := range n.GetOutput() {
			if o == "" || j >= len(outs) || outs[j] == onnxpb.TensorProto_UNDEFINED {
				continue
			}
			if _, known := types[o]; !known {
				types[o] = outs[j]
			}
		}
	}
	return types
}

func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func outputTypes(n *onnxpb.NodeProto, types map[string]onnxpb.TensorProto_DataType) []onnxpb.TensorProto_DataType {
	in := func(i int) onnxpb.TensorProto_DataType {
		if i < len(n.GetInput()) {
			return types[n.GetInput()[i]]
		}
		return onnxpb.TensorProto_UNDEFINED
	}
	first := onnxpb.TensorProto_UNDEFINED
	for _, name := range n.GetInput() {
		if t, ok := types[name]; ok && name != "" {
			first = t
			break
		}
	}
	all := func(t onnxpb.TensorProto_DataType) []onnxpb.TensorProto_DataType {
		out := make([]onnxpb.TensorProto_DataType, len(n.GetOutput()))
		for i := range out {
			out[i] = t
		}
		return out
	}
	switch n.GetOpType() {
	case "Cast":
		if a := attr(n, "to"); a != nil {
			return all(onnxpb.TensorProto_DataType(a.GetI()))
		}
	case "CastLike":
		return all(in(1))
	case "Shape", "Size", "NonZero", "ArgMax", "ArgMin":
		return all(onnxpb.TensorProto_INT64)
	case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf":
		return all(onnxpb.TensorProto_BOOL)
	case "Where":
		return all(in(1))
	case "Range":
		return all(in(0))
	case "TopK":
		return []onnxpb.TensorProto_DataType{in(0), onnxpb.TensorProto_INT64}
	case "Unique":
		return []onnxpb.TensorProto_DataType{in(0), onnxpb.TensorProto_INT64, onnxpb.TensorProto_INT64, onnxpb.TensorProto_INT64}
	case "MaxPool":
		return []onnxpb.TensorProto_DataType{in(0), onnxpb.TensorProto_INT64}
	case "Dropout":
		return []onnxpb.TensorProto_DataType{in(0), onnxpb.TensorProto_BOOL}
	case "ConstantOfShape":
		if a := attr(n, "value"); a != nil && a.GetT() != nil {
			return all(onnxpb.TensorProto_DataType(a.GetT().GetDataType()))
		}
		return all(onnxpb.TensorProto_FLOAT)
	case "EyeLike", "RandomNormalLike", "RandomUniformLike", "RandomNormal", "RandomUniform", "Multinomial":
		if a := attr(n, "dtype"); a != nil {
			return all(onnxpb.TensorProto_DataType(a.GetI()))
		}
		if n.GetOpType() == "Multinomial" {
			return all(onnxpb.TensorProto_INT32)
		}
		if len(n.GetInput()) > 0 {
			return all(in(0))
		}
		return all(onnxpb.TensorProto_FLOAT)
	case "Constant":
		for _, a := range n.GetAttribute() {
			switch a.GetName() {
			case "value", "sparse_value":
				if a.GetT() != nil {
					return all(onnxpb.TensorProto_DataType(a.GetT().GetDataType()))
				}
			case "value_float", "value_floats":
				return all(onnxpb.TensorProto_FLOAT)
			case "value_int", "value_ints":
				return all(onnxpb.TensorProto_INT64)
			case "value_string", "value_strings":
				return all(onnxpb.TensorProto_STRING)
			}
		}
	case "QuantizeLinear":
		if len(n.GetInput()) > 2 {
			return all(in(2))
		}
		return all(onnxpb.TensorProto_UINT8)
	case "DequantizeLinear":
		return all(onnxpb.TensorProto_FLOAT)
	}
	return all(first)
}
