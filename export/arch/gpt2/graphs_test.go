package gpt2_test

import (
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
)

// TestGPT2GraphsHaveNoSlice keeps Slice out of the GPT-2 forward stages and
// their backward graph: ONNX Runtime 1.29's plugin CUDA provider crashes in
// Slice (seen on an H200), so the graphs take their pieces with Shape
// start/end attributes and Gathers instead.
func TestGPT2GraphsHaveNoSlice(t *testing.T) {
	c := gpt2.Config{NLayers: 2, DModel: 8, NHeads: 2, DHead: 4, DFF: 32, NVocab: 11, NCtx: 16}
	w := graphs.Weights{Location: "weights.bin", Offsets: map[string][2]int64{}}
	var off int64
	for _, s := range gpt2.WeightSpecs(c) {
		n := int64(4)
		for _, d := range s.Dims {
			n *= d
		}
		w.Offsets[s.Name] = [2]int64{off, n}
		off += n
	}
	stages, err := gpt2.Stages(c, w)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := graphs.Merge(stages)
	if err != nil {
		t.Fatal(err)
	}
	var wrt []string
	for _, tensor := range gpt2.Points(c) {
		wrt = append(wrt, tensor)
	}
	gr, err := graphs.Backward(whole, graphs.GradSpec{Seeds: []string{"logits"}, Wrt: wrt})
	if err != nil {
		t.Fatal(err)
	}
	if len(gr.Outputs) < len(wrt)/2 {
		t.Fatalf("backward graph has %d gradient outputs for %d hook tensors", len(gr.Outputs), len(wrt))
	}
	for name, m := range map[string]*onnxpb.ModelProto{"forward": whole, "backward": gr.Model} {
		for _, n := range m.GetGraph().GetNode() {
			if n.GetOpType() == "Slice" {
				t.Errorf("%s graph has a Slice node %s", name, n.GetName())
			}
		}
	}
}
