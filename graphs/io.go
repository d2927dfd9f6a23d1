package graphs

import (
	"fmt"
	"os"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// ReadModel parses an .onnx file.
func ReadModel(path string) (*onnxpb.ModelProto, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("parse %s: no graph", path)
	}
	return &m, nil
}
