package export

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// ErrExists is returned when the output folder exists and overwriting was not asked for.
var ErrExists = errors.New("output folder exists")

// WeightsFileName is the shared weights file of an exported directory.
const WeightsFileName = "weights.bin"

// Alignment of every tensor in the weights file (a page).
const Alignment = 4096

// Source gives a GPT-2 checkpoint's tensors by state-dict key.
type Source interface {
	// GPT2Config is the model's configuration.
	GPT2Config() graphs.GPT2Config
	// Tensor returns a tensor in C order and its shape.
	Tensor(key string) ([]float32, []int, error)
	// Describe names the source for messages and the manifest.
	Describe() string
}

// WriteOptions control an export.
type WriteOptions struct {
	Name      string // model name in the manifest (default: the folder name)
	Overwrite bool   // replace an existing exported folder
	Whole     bool   // also write whole.onnx, the model as one graph
}

// atomicDir creates a temporary sibling of out, lets fill populate it, then
// renames it into place. Nothing is left behind on failure.
func atomicDir(out string, overwrite bool, fill func(tmp string) error) (err error) {
	out = filepath.Clean(out)
	if _, err := os.Stat(out); err == nil {
		if !overwrite {
			return fmt.Errorf("%w: %s", ErrExists, out)
		}
		if !IsExported(out) {
			return fmt.Errorf("%w: %s is not an exported model, refusing to replace it", ErrExists, out)
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp-" + randomSuffix()
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := fill(tmp); err != nil {
		return err
	}
	if _, err := os.Stat(out); err == nil {
		old := out + ".old-" + randomSuffix()
		if err := os.Rename(out, old); err != nil {
			return err
		}
		if err := os.Rename(tmp, out); err != nil {
			os.Rename(old, out)
			return err
		}
		return os.RemoveAll(old)
	}
	return os.Rename(tmp, out)
}

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// weightWriter appends float32 tensors to the weights file at aligned offsets.
type weightWriter struct {
	f   *os.File
	w   *bufio.Writer
	off int64
}

func newWeightWriter(path string) (*weightWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &weightWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (ww *weightWriter) add(data []float32) (offset, length int64, err error) {
	if pad := (Alignment - ww.off%Alignment) % Alignment; pad > 0 {
		if _, err := ww.w.Write(make([]byte, pad)); err != nil {
			return 0, 0, err
		}
		ww.off += pad
	}
	offset = ww.off
	length = int64(len(data)) * 4
	if len(data) > 0 {
		if _, err := ww.w.Write(f32Bytes(data)); err != nil {
			return 0, 0, err
		}
	}
	ww.off += length
	return offset, length, nil
}

func (ww *weightWriter) close() error {
	err := ww.w.Flush()
	if err == nil {
		err = ww.f.Sync()
	}
	if cerr := ww.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// f32Bytes views float32 data as little-endian bytes (every platform Go and
// ONNX Runtime share here is little-endian; checked in init).
func f32Bytes(v []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*4)
}

func init() {
	x := uint16(1)
	if *(*byte)(unsafe.Pointer(&x)) != 1 {
		panic("onnx-tdb needs a little-endian machine")
	}
}

func transpose2D(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}

func writeModel(path string, m *onnxpb.ModelProto) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// WriteGPT2 exports a GPT-2 checkpoint: weights.bin, one graph per stage and
// manifest.json, into out (atomically).
func WriteGPT2(src Source, out string, o WriteOptions) (*Manifest, error) {
	cfg := src.GPT2Config()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("export %s: %w", src.Describe(), err)
	}
	name := o.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(out))
	}
	man := &Manifest{
		Format:       Format,
		Name:         name,
		Architecture: "gpt2",
		Source:       src.Describe(),
		Config:       cfg,
		Tokenizer:    "gpt2",
		Inputs:       IO{Tokens: graphs.InTokens, Pad: graphs.InPad, PrevLens: graphs.InPrevLens, Logits: graphs.OutLogits},
		Switches:     graphs.GPT2Switches(cfg),
	}
	err := atomicDir(out, o.Overwrite, func(tmp string) error {
		ww, err := newWeightWriter(filepath.Join(tmp, WeightsFileName))
		if err != nil {
			return err
		}
		table := graphs.Weights{Location: WeightsFileName, Offsets: map[string][2]int64{}}
		for _, spec := range graphs.GPT2Weights(cfg) {
			data, shape, err := src.Tensor(spec.Source)
			if err != nil {
				ww.close()
				return err
			}
			want := spec.Dims
			if spec.Transpose {
				want = []int64{spec.Dims[1], spec.Dims[0]}
			}
			if fmt.Sprint(toInt64(shape)) != fmt.Sprint(want) {
				ww.close()
				return fmt.Errorf("%s: %s has shape %v, the config needs %v", src.Describe(), spec.Source, shape, want)
			}
			if spec.Transpose {
				data = transpose2D(data, shape[0], shape[1])
			}
			off, n, err := ww.add(data)
			if err != nil {
				ww.close()
				return fmt.Errorf("write weights: %w", err)
			}
			table.Offsets[spec.Name] = [2]int64{off, n}
			man.Weights.Tensors = append(man.Weights.Tensors, Weight{
				Name: spec.Name, Source: spec.Source, Transposed: spec.Transpose, Dims: spec.Dims, Offset: off, Length: n,
			})
		}
		man.Weights.File = WeightsFileName
		man.Weights.Bytes = ww.off
		if err := ww.close(); err != nil {
			return fmt.Errorf("write weights: %w", err)
		}
		stages, err := graphs.GPT2Stages(cfg, table)
		if err != nil {
			return err
		}
		for i, stageName := range graphs.GPT2StageNames(cfg) {
			file := stageName + ".onnx"
			if err := writeModel(filepath.Join(tmp, file), stages[i]); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			man.Stages = append(man.Stages, Stage{Name: stageName, File: file})
		}
		if o.Whole {
			whole, err := graphs.Merge(stages)
			if err != nil {
				return err
			}
			if err := writeModel(filepath.Join(tmp, "whole.onnx"), whole); err != nil {
				return fmt.Errorf("write whole.onnx: %w", err)
			}
			man.Whole = "whole.onnx"
		}
		for site, tensor := range graphs.GPT2Points(cfg) {
			p := Point{Point: site.Point.Path(), Tensor: tensor}
			if site.Layer >= 0 {
				l := site.Layer
				p.Layer = &l
			}
			man.Points = append(man.Points, p)
		}
		sortPoints(man.Points, cfg.NLayers)
		for l := 0; l < cfg.NLayers; l++ {
			man.KVCache = append(man.KVCache, KV{Layer: l, PastK: graphs.PastK(l), PastV: graphs.PastV(l),
				PresentK: graphs.PresentK(l), PresentV: graphs.PresentV(l), Width: cfg.DModel})
		}
		return writeJSON(filepath.Join(tmp, ManifestFile), man)
	})
	if err != nil {
		return nil, fmt.Errorf("export %s to %s: %w", src.Describe(), out, err)
	}
	return man, nil
}

func toInt64(s []int) []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = int64(d)
	}
	return out
}
