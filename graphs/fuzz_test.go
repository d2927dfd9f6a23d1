package graphs

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
)

// FuzzReadModel: import reads (ReadModel, through ParseModel) an .onnx file from anywhere. Parsing never
// panics; inputs are kept small (the bound on what a file may ask for is its
// size: protobuf allocates in proportion to the bytes present).
func FuzzReadModel(f *testing.F) {
	b := NewBuilder("g")
	b.Input("x", Float, "B", "4")
	b.Op("Relu", "y", []string{"x"})
	b.Output("y", Float, "B", "4")
	if seed, err := proto.Marshal(b.Model()); err == nil {
		f.Add(seed)
	}
	f.Add([]byte{0x3a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, ok := fuzzModel(data)
		if !ok {
			return
		}
		if m.GetGraph() == nil {
			t.Fatal("a model without a graph was accepted")
		}
	})
}

// fuzzModel parses a fuzz input as a model; inputs over 64 KiB are skipped
// (protobuf allocates in proportion to the bytes present).
func fuzzModel(data []byte) (*onnxpb.ModelProto, bool) {
	if len(data) > 64<<10 {
		return nil, false
	}
	m, err := ParseModel(data)
	return m, err == nil
}
