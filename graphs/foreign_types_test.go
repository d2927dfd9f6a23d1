package graphs

import (
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// Split types the inputs and outputs of segments with InferTypes: every
// tensor of the two torch-exported foreign graphs gets its element type
// (modelctx's TestInferTypesAgreesWithORTOnForeignGraphs checks each
// against what ONNX Runtime computes).
func TestInferTypesCoversTheForeignGraphs(t *testing.T) {
	paths := []string{filepath.Join(golden.Dir(), "foreign_llama", "model.onnx")}
	if d, ok := golden.SharedDir(); ok {
		paths = append(paths, filepath.Join(d, "foreign", "model.onnx"))
	} else {
		t.Log("the shared golden set/foreign absent: checking foreign_llama only")
	}
	want := map[string]onnxpb.TensorProto_DataType{
		"Shape": onnxpb.TensorProto_INT64, "Not": onnxpb.TensorProto_BOOL, "Equal": onnxpb.TensorProto_BOOL,
		"Greater": onnxpb.TensorProto_BOOL, "MatMul": onnxpb.TensorProto_FLOAT, "Einsum": onnxpb.TensorProto_FLOAT,
		"Softmax": onnxpb.TensorProto_FLOAT, "CumSum": onnxpb.TensorProto_INT64, "Sin": onnxpb.TensorProto_FLOAT, "Cos": onnxpb.TensorProto_FLOAT,
		"Sigmoid": onnxpb.TensorProto_FLOAT, "ReduceMean": onnxpb.TensorProto_FLOAT, "Tanh": onnxpb.TensorProto_FLOAT,
	}
	for _, p := range paths {
		m, err := ReadModel(p)
		if err != nil {
			t.Fatal(err)
		}
		types := InferTypes(m)
		for _, n := range m.GetGraph().GetNode() {
			for _, o := range n.GetOutput() {
				got := types[o]
				if got == onnxpb.TensorProto_UNDEFINED {
					t.Errorf("%s: %s (%s) has no type", filepath.Base(filepath.Dir(p)), o, n.GetOpType())
					continue
				}
				if w, ok := want[n.GetOpType()]; ok && got != w {
					t.Errorf("%s: %s (%s) typed %s, want %s", filepath.Base(filepath.Dir(p)), o, n.GetOpType(), got, w)
				}
			}
		}
	}
}
