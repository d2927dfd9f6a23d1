package llama

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
	"github.com/onnx-tdb/onnx-tdb/internal/weightsfile"
	"google.golang.org/protobuf/proto"
)

// Architecture is the name the manifest records.
const Architecture = "llama"

// GraphsVersion is the version of the stage graphs Write builds.
const GraphsVersion = 1

// ConfigCopy is the exported folder's copy of the Llama config (the
// manifest's config holds only the dimensions every architecture has).
const ConfigCopy = "llama_config.json"

// Write exports an open checkpoint into out, atomically: weights.bin, one
// graph per stage, the config, the tokenizer.json when the checkpoint has
// one, and manifest.json. It stops between tensors when ctx is done.
func Write(ctx context.Context, ck *Checkpoint, out string, o export.WriteOptions) (*export.Manifest, error) {
	cfg := ck.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("export %s: %w", ck.Describe(), err)
	}
	out = filepath.Clean(out)
	if _, err := os.Stat(out); err == nil {
		if !o.Overwrite {
			return nil, fmt.Errorf("export %s: %w: %s", ck.Describe(), export.ErrExists, out)
		}
		if !export.IsExported(out) {
			return nil, fmt.Errorf("export %s: %w: %s is not an exported model, refusing to replace it", ck.Describe(), export.ErrExists, out)
		}
	}
	man := newManifest(ck, out, o)
	err := atomicdir.Write(out, func(tmp string) error {
		table, err := writeWeights(ctx, ck, tmp, man)
		if err != nil {
			return err
		}
		if err := writeStages(cfg, table, tmp, o.Whole, man); err != nil {
			return err
		}
		if ck.HasTokenizer() {
			if err := copyFile(filepath.Join(ck.Dir, TokenizerFile), filepath.Join(tmp, TokenizerFile)); err != nil {
				return fmt.Errorf("copy %s: %w", TokenizerFile, err)
			}
			man.Tokenizer = TokenizerFile
		}
		if err := writeJSON(filepath.Join(tmp, ConfigCopy), cfg); err != nil {
			return err
		}
		return writeJSON(filepath.Join(tmp, export.ManifestFile), man)
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("export %s to %s: %w", ck.Describe(), out, err)
	}
	return man, nil
}

func newManifest(ck *Checkpoint, out string, o export.WriteOptions) *export.Manifest {
	cfg := ck.Config
	name := o.Name
	if name == "" {
		name = filepath.Base(out)
	}
	man := &export.Manifest{
		Format:       export.Format,
		Name:         name,
		Architecture: Architecture,
		Source:       ck.Describe(),
		Config: graphs.GPT2Config{
			NLayers: cfg.NLayers, DModel: cfg.DModel, NHeads: cfg.NHeads, DHead: cfg.DHead,
			DFF: cfg.DFF, NVocab: cfg.NVocab, NCtx: cfg.NCtx,
		},
		Inputs:        export.IO{Tokens: InTokens, Pad: InPad, PrevLens: InPrevLens, Logits: OutLogits},
		Switches:      Switches(cfg),
		GraphsVersion: GraphsVersion,
	}
	for site, tensor := range Points(cfg) {
		p := export.Point{Point: site.Point.Path(), Tensor: tensor}
		if site.Layer >= 0 {
			l := site.Layer
			p.Layer = &l
		}
		man.Points = append(man.Points, p)
	}
	sortPoints(man.Points, cfg.NLayers)
	for l := 0; l < cfg.NLayers; l++ {
		man.KVCache = append(man.KVCache, export.KV{Layer: l, PastK: PastK(l), PastV: PastV(l),
			PresentK: PresentK(l), PresentV: PresentV(l), Width: cfg.KVWidth()})
	}
	return man
}

// writeWeights copies every tensor the graphs read into tmp's weights file
// (transposed to [in,out] where the graphs multiply by it) and records
// where each went.
func writeWeights(ctx context.Context, ck *Checkpoint, tmp string, man *export.Manifest) (Table, error) {
	table := Table{Location: export.WeightsFileName, Offsets: map[string][2]int64{}}
	ww, err := weightsfile.Create(filepath.Join(tmp, export.WeightsFileName))
	if err != nil {
		return table, err
	}
	for _, spec := range Weights(ck.Config) {
		if err := ctx.Err(); err != nil {
			ww.Close()
			return table, err
		}
		data, shape, err := ck.Tensor(spec.Source)
		if err != nil {
			ww.Close()
			return table, err
		}
		want := spec.Dims
		if spec.Transpose {
			want = []int64{spec.Dims[1], spec.Dims[0]}
		}
		if !sameShape(shape, want) {
			ww.Close()
			return table, fmt.Errorf("%s: %s has shape %v, the config needs %v", ck.Describe(), spec.Source, shape, want)
		}
		if spec.Transpose {
			data = transpose2D(data, shape[0], shape[1])
		}
		off, n, err := ww.AppendBytes(weightsfile.Bytes(data))
		if err != nil {
			ww.Close()
			return table, fmt.Errorf("write weights: %w", err)
		}
		table.Offsets[spec.Name] = [2]int64{off, n}
		man.Weights.Tensors = append(man.Weights.Tensors, export.Weight{
			Name: spec.Name, Source: spec.Source, Transposed: spec.Transpose, Dims: spec.Dims, Offset: off, Length: n,
		})
	}
	man.Weights.File = export.WeightsFileName
	man.Weights.Bytes = ww.Size()
	if err := ww.Close(); err != nil {
		return table, fmt.Errorf("write weights: %w", err)
	}
	return table, nil
}

// writeStages writes one .onnx file per stage (and whole.onnx when asked).
func writeStages(cfg Config, table Table, tmp string, whole bool, man *export.Manifest) error {
	stages, err := Stages(cfg, table)
	if err != nil {
		return err
	}
	for i, name := range StageNames(cfg) {
		file := name + ".onnx"
		if err := writeModel(filepath.Join(tmp, file), stages[i]); err != nil {
			return fmt.Errorf("write %s: %w", file, err)
		}
		man.Stages = append(man.Stages, export.Stage{Name: name, File: file})
	}
	if whole {
		m, err := graphs.Merge(stages)
		if err != nil {
			return err
		}
		if err := writeModel(filepath.Join(tmp, "whole.onnx"), m); err != nil {
			return fmt.Errorf("write whole.onnx: %w", err)
		}
		man.Whole = "whole.onnx"
	}
	return nil
}

// ReadConfig reads the Llama config an exported folder keeps beside its
// manifest.
func ReadConfig(dir string) (Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigCopy))
	if err != nil {
		return Config{}, fmt.Errorf("read llama config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %v", ErrConfig, ConfigCopy, err)
	}
	return c, c.Validate()
}

func sameShape(got []int, want []int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if int64(got[i]) != want[i] {
			return false
		}
	}
	return true
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

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// sortPoints orders manifest points in call order.
func sortPoints(ps []export.Point, nLayers int) {
	order := func(p export.Point) int {
		s, err := p.Site()
		if err != nil {
			return 1 << 30
		}
		return s.Order(nLayers)
	}
	sort.SliceStable(ps, func(i, j int) bool { return order(ps[i]) < order(ps[j]) })
}
