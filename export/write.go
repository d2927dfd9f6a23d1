package export

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
	"github.com/onnx-tdb/onnx-tdb/internal/weightsfile"
	"google.golang.org/protobuf/proto"
)

// ErrExists is returned when the output folder exists and overwriting was not asked for.
var ErrExists = errors.New("output folder exists")

// WeightsFileName is the shared weights file of an exported directory.
const WeightsFileName = "weights.bin"

// Alignment of every tensor in the weights file (a page).
const Alignment = weightsfile.Alignment

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

// atomicDir writes out all at once (see internal/atomicdir): fill populates
// a temporary sibling that is renamed into place. An existing folder is
// replaced only when overwrite is set and it is an exported model.
func atomicDir(out string, overwrite bool, fill func(tmp string) error) error {
	out = filepath.Clean(out)
	if _, err := os.Stat(out); err == nil {
		if !overwrite {
			return fmt.Errorf("%w: %s", ErrExists, out)
		}
		if !IsExported(out) {
			return fmt.Errorf("%w: %s is not an exported model, refusing to replace it", ErrExists, out)
		}
	}
	return atomicdir.Write(out, fill, nil)
}

// weightWriter appends float32 tensors to the weights file at aligned offsets.
type weightWriter struct{ *weightsfile.Writer }

func newWeightWriter(path string) (*weightWriter, error) {
	w, err := weightsfile.Create(path)
	if err != nil {
		return nil, err
	}
	return &weightWriter{w}, nil
}

func (ww *weightWriter) add(data []float32) (offset, length int64, err error) {
	return ww.AppendBytes(f32Bytes(data))
}

func (ww *weightWriter) close() error { return ww.Close() }

// f32Bytes views float32 data as little-endian bytes (every platform Go and
// ONNX Runtime share here is little-endian; weightsfile checks).
func f32Bytes(v []float32) []byte { return weightsfile.Bytes(v) }

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
		Format:        Format,
		Name:          name,
		Architecture:  "gpt2",
		Source:        src.Describe(),
		Config:        cfg,
		Tokenizer:     "gpt2",
		Inputs:        IO{Tokens: graphs.InTokens, Pad: graphs.InPad, PrevLens: graphs.InPrevLens, Logits: graphs.OutLogits},
		Switches:      graphs.GPT2Switches(cfg),
		GraphsVersion: GPT2GraphsVersion,
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
		man.Weights.Bytes = ww.Size()
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
