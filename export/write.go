package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
	"github.com/onnx-tdb/onnx-tdb/internal/weightsfile"
	"google.golang.org/protobuf/proto"
)

// Errors of export.
var (
	// ErrExists is returned when the output folder exists and overwriting was not asked for.
	ErrExists = errors.New("output folder exists")
	// ErrCheckpoint is returned for a checkpoint that is damaged or does not
	// fit its own config.
	ErrCheckpoint = errors.New("bad checkpoint")
	// ErrUnsupported is returned for a checkpoint of a kind no plugin reads.
	ErrUnsupported = errors.New("unsupported checkpoint")
)

// WeightsFileName is the shared weights file of an exported directory.
const WeightsFileName = "weights.bin"

// Alignment of every tensor in the weights file (a page).
const Alignment = weightsfile.Alignment

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
	return atomicDirContext(context.Background(), out, overwrite, func(_ context.Context, tmp string) error { return fill(tmp) })
}

// atomicDirContext is atomicDir that stops when ctx is cancelled, leaving
// nothing under out.
func atomicDirContext(ctx context.Context, out string, overwrite bool, fill func(ctx context.Context, tmp string) error) error {
	out = filepath.Clean(out)
	if _, err := os.Stat(out); err == nil {
		if !overwrite {
			return fmt.Errorf("%w: %s", ErrExists, out)
		}
		if !IsExported(out) {
			return fmt.Errorf("%w: %s is not an exported model, refusing to replace it", ErrExists, out)
		}
	}
	return atomicdir.WriteContext(ctx, out, fill, nil)
}

// Builder is what an architecture's Source.Build writes an export
// through: the weights first (AddWeight), then the stage graphs that
// reference them (Weights, AddStage), and the manifest's architecture
// fields (Manifest, AddPoint).
type Builder struct {
	ctx    context.Context
	dir    string
	man    *Manifest
	ww     *weightsfile.Writer
	table  graphs.Weights
	stages []*onnxpb.ModelProto
}

// Manifest is the manifest being written; Build fills its architecture
// fields (Config, ArchConfig, Tokenizer, IO, KVCache, Switches,
// Boundaries, WeightLocations, OutLayers, GraphsVersion).
func (b *Builder) Manifest() *Manifest { return b.man }

// AddWeight appends a float32 tensor to the weights file under name, with
// its dims as stored and the checkpoint key it came from (source may be
// empty). Transposed marks a tensor stored as the transpose of the
// checkpoint's own [out, in] layout.
func (b *Builder) AddWeight(name, source string, data []float32, dims []int64, transposed bool) error {
	if b.ww == nil {
		return fmt.Errorf("export: weight %s added after the stage graphs", name)
	}
	if err := b.ctx.Err(); err != nil {
		return err
	}
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	if n != int64(len(data)) {
		return fmt.Errorf("export: weight %s has %d values, dims %v need %d", name, len(data), dims, n)
	}
	off, length, err := b.ww.AppendBytes(weightsfile.Bytes(data))
	if err != nil {
		return fmt.Errorf("write weights: %w", err)
	}
	b.table.Offsets[name] = [2]int64{off, length}
	b.man.Weights.Tensors = append(b.man.Weights.Tensors, Weight{
		Name: name, Source: source, Transposed: transposed, Dims: dims, Offset: off, Length: length,
	})
	return nil
}

// Weights finishes the weights file and returns the table the stage graphs
// reference it through.
func (b *Builder) Weights() (graphs.Weights, error) {
	if b.ww != nil {
		b.man.Weights.File = WeightsFileName
		b.man.Weights.Bytes = b.ww.Size()
		err := b.ww.Close()
		b.ww = nil
		if err != nil {
			return graphs.Weights{}, fmt.Errorf("write weights: %w", err)
		}
	}
	return b.table, nil
}

// AddStage writes one stage graph (stages run in the order added).
func (b *Builder) AddStage(name string, m *onnxpb.ModelProto) error {
	if _, err := b.Weights(); err != nil {
		return err
	}
	if err := b.ctx.Err(); err != nil {
		return err
	}
	file := name + ".onnx"
	if err := writeModel(filepath.Join(b.dir, file), m); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	b.man.Stages = append(b.man.Stages, Stage{Name: name, File: file})
	b.stages = append(b.stages, m)
	return nil
}

// AddPoint records the tensor that carries a hook site.
func (b *Builder) AddPoint(site hooks.Site, tensor string, perm ...int) {
	p := Point{Point: site.Point.Path(), Tensor: tensor, Perm: perm}
	if site.Point.PerLayer() {
		l := site.Layer
		p.Layer = &l
	}
	b.man.Points = append(b.man.Points, p)
}

func writeModel(path string, m *onnxpb.ModelProto) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Write exports a checkpoint opened by its architecture: weights.bin, one
// graph per stage and manifest.json, into out, atomically.
func Write(ctx context.Context, src Source, out string, o WriteOptions) (*Manifest, error) {
	if _, err := Lookup(src.Architecture()); err != nil {
		return nil, fmt.Errorf("export %s: %w", src.Describe(), err)
	}
	name := o.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(out))
	}
	man := &Manifest{Format: Format, Name: name, Architecture: src.Architecture(), Source: src.Describe()}
	err := atomicDirContext(ctx, out, o.Overwrite, func(ctx context.Context, tmp string) error {
		ww, err := weightsfile.CreateContext(ctx, filepath.Join(tmp, WeightsFileName))
		if err != nil {
			return err
		}
		b := &Builder{ctx: ctx, dir: tmp, man: man, ww: ww,
			table: graphs.Weights{Location: WeightsFileName, Offsets: map[string][2]int64{}}}
		defer func() {
			if b.ww != nil {
				b.ww.Close()
			}
		}()
		if err := src.Build(ctx, b); err != nil {
			return err
		}
		if len(b.stages) == 0 {
			return fmt.Errorf("architecture %s built no stage graphs", src.Architecture())
		}
		if o.Whole {
			whole, err := graphs.Merge(b.stages)
			if err != nil {
				return err
			}
			if err := writeModel(filepath.Join(tmp, "whole.onnx"), whole); err != nil {
				return fmt.Errorf("write whole.onnx: %w", err)
			}
			man.Whole = "whole.onnx"
		}
		sortPoints(man.Points, man.Config.NLayers)
		if err := RecordSizes(tmp, man); err != nil {
			return err
		}
		return writeJSON(filepath.Join(tmp, ManifestFile), man)
	})
	if err != nil {
		return nil, fmt.Errorf("export %s to %s: %w", src.Describe(), out, err)
	}
	return man, nil
}

// AddStages writes stage graphs in order under their names (see AddStage).
func (b *Builder) AddStages(names []string, stages []*onnxpb.ModelProto) error {
	if len(names) != len(stages) {
		return fmt.Errorf("export: %d stage names for %d stage graphs", len(names), len(stages))
	}
	for i, name := range names {
		if err := b.AddStage(name, stages[i]); err != nil {
			return err
		}
	}
	return nil
}

// AddPoints records the tensor of every site (see AddPoint).
func (b *Builder) AddPoints(points map[hooks.Site]string) {
	for site, tensor := range points {
		b.AddPoint(site, tensor)
	}
}

// StandardKVCache names the KV cache of nLayers layers, each of width
// channels, by the graphs package's names (graphs.PastK, ...): what a
// plugin whose stage graphs use those names records in the manifest.
func StandardKVCache(nLayers, width int) []KV {
	kv := make([]KV, nLayers)
	for l := range kv {
		kv[l] = KV{Layer: l, PastK: graphs.PastK(l), PastV: graphs.PastV(l),
			PresentK: graphs.PresentK(l), PresentV: graphs.PresentV(l), Width: width}
	}
	return kv
}

// ResidualBoundaries are the sites of the residual stream between the
// stages of a model split into an embedding, one stage per layer and a head:
// the input of each of its nLayers layers (hooks.ResidualInto).
func ResidualBoundaries(nLayers int) []string {
	out := make([]string, nLayers)
	for l := range out {
		out[l] = hooks.ResidualInto(l).String()
	}
	return out
}

// Transpose2D returns the transpose of a row-major rows × cols matrix.
func Transpose2D(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}
