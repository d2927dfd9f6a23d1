package export

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/internal/weightsfile"
	"google.golang.org/protobuf/proto"
)

// externalizeWeights moves the float32 initializers of at least minExternal
// elements into dir/weights.bin at page-aligned offsets and points the graph
// at them; the hook map's initializers[] names the checkpoint key each
// holds.
func externalizeWeights(model *onnxpb.ModelProto, srcDir, dir string, sources map[string]HookMapWeight, man *Manifest) error {
	ww, err := weightsfile.Create(filepath.Join(dir, WeightsFileName))
	if err != nil {
		return err
	}
	g := model.GetGraph()
	for i, t := range g.GetInitializer() {
		if t.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
			if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
				ww.Close()
				return fmt.Errorf("%w: initializer %s: external data of element type %s is not supported", ErrImport, t.GetName(), onnxpb.TensorProto_DataType(t.GetDataType()))
			}
			continue
		}
		n := int64(1)
		for _, d := range t.GetDims() {
			n *= d
		}
		src, known := sources[t.GetName()]
		if n < minExternal && !known && t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			continue
		}
		data, err := initializerData(t, n, srcDir)
		if err != nil {
			ww.Close()
			return fmt.Errorf("%w: initializer %s: %v", ErrImport, t.GetName(), err)
		}
		off, length, err := ww.AppendBytes(weightsfile.Bytes(data))
		if err != nil {
			ww.Close()
			return fmt.Errorf("write weights: %w", err)
		}
		g.Initializer[i] = graphs.ExternalTensor(t.GetName(), t.GetDims(), WeightsFileName, off, length)
		w := Weight{Name: t.GetName(), Dims: append([]int64{}, t.GetDims()...), Offset: off, Length: length}
		if known {
			w.Source = src.StateDictKey
			w.Transposed = src.Transform == "transpose"
		}
		man.Weights.Tensors = append(man.Weights.Tensors, w)
	}
	man.Weights.File = WeightsFileName
	man.Weights.Bytes = ww.Size()
	if err := ww.Close(); err != nil {
		return fmt.Errorf("write weights: %w", err)
	}
	return nil
}

// initializerData decodes a float32 initializer held as raw_data,
// float_data or external data beside the source graph.
func initializerData(t *onnxpb.TensorProto, n int64, srcDir string) ([]float32, error) {
	var raw []byte
	switch {
	case t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL:
		b, err := readExternal(t, n*4, srcDir)
		if err != nil {
			return nil, err
		}
		raw = b
	case t.RawData != nil:
		raw = t.GetRawData()
	default:
		if int64(len(t.GetFloatData())) != n {
			return nil, fmt.Errorf("%d float_data values for %d elements", len(t.GetFloatData()), n)
		}
		return append([]float32(nil), t.GetFloatData()...), nil
	}
	if int64(len(raw)) != n*4 {
		return nil, fmt.Errorf("%d bytes of data for %d float32 elements", len(raw), n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out, nil
}

func readExternal(t *onnxpb.TensorProto, want int64, srcDir string) ([]byte, error) {
	var loc string
	var off, length int64 = 0, -1
	for _, kv := range t.GetExternalData() {
		var err error
		switch kv.GetKey() {
		case "location":
			loc = kv.GetValue()
		case "offset":
			off, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("external data %s = %q: %v", kv.GetKey(), kv.GetValue(), err)
		}
	}
	if loc == "" || filepath.IsAbs(loc) || loc != filepath.Clean(loc) || loc == ".." || len(loc) > 2 && loc[:3] == "../" {
		return nil, fmt.Errorf("external data location %q must be a file beside the graph", loc)
	}
	if length < 0 {
		length = want
	}
	if length != want {
		return nil, fmt.Errorf("external data holds %d bytes, the dims need %d", length, want)
	}
	f, err := os.Open(filepath.Join(srcDir, loc))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, length)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read %s at %d: %w", loc, off, err)
	}
	return b, nil
}

// constantsToInitializers turns Constant nodes into initializers of the same
// name. A cut graph then gives each segment the constants it reads, instead
// of passing them from segment to segment.
func constantsToInitializers(g *onnxpb.GraphProto) error {
	var keep []*onnxpb.NodeProto
	for _, n := range g.GetNode() {
		if n.GetOpType() != "Constant" || n.GetDomain() != "" || len(n.GetOutput()) != 1 || len(n.GetAttribute()) != 1 {
			keep = append(keep, n)
			continue
		}
		a := n.GetAttribute()[0]
		name := n.GetOutput()[0]
		var t *onnxpb.TensorProto
		switch a.GetName() {
		case "value":
			if a.GetT() == nil {
				return fmt.Errorf("%w: Constant %s has an empty value", ErrImport, name)
			}
			t = proto.Clone(a.GetT()).(*onnxpb.TensorProto)
		case "value_float":
			t = &onnxpb.TensorProto{DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), FloatData: []float32{a.GetF()}}
		case "value_floats":
			t = &onnxpb.TensorProto{DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Dims: []int64{int64(len(a.GetFloats()))}, FloatData: a.GetFloats()}
		case "value_int":
			t = &onnxpb.TensorProto{DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), Int64Data: []int64{a.GetI()}}
		case "value_ints":
			t = &onnxpb.TensorProto{DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), Dims: []int64{int64(len(a.GetInts()))}, Int64Data: a.GetInts()}
		default:
			keep = append(keep, n)
			continue
		}
		t.Name = proto.String(name)
		g.Initializer = append(g.Initializer, t)
	}
	g.Node = keep
	return nil
}
