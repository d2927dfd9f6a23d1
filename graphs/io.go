package graphs

import (
	"fmt"
	"os"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// maxModelBytes is protobuf's own limit on a message: a larger .onnx file
// cannot be one (its weights must be external data), so it is refused
// before it is read.
const maxModelBytes = 2 << 30

// ReadModel parses an .onnx file.
func ReadModel(path string) (*onnxpb.ModelProto, error) {
	if st, err := os.Stat(path); err == nil && st.Size() >= maxModelBytes {
		return nil, fmt.Errorf("read model %s: %d bytes, more than a protobuf message can hold (keep the weights as external data)", path, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	m, err := ParseModel(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return m, nil
}

// ParseModel parses the bytes of an .onnx file.
func ParseModel(b []byte) (*onnxpb.ModelProto, error) {
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("no graph")
	}
	return &m, nil
}
