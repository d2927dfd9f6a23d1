package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/internal/fileio"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Format is the manifest format written by this version: 2 records the
// architecture's own config, its residual boundaries, weight locations and
// MLP output layers, so the engine needs no architecture's names.
const Format = "onnx-tdb/2"

// ManifestFile is the manifest's name inside an exported directory.
const ManifestFile = "manifest.json"

// ErrNotExported is returned when a folder is not an exported model.
var ErrNotExported = errors.New("not an exported model directory")

// Manifest describes an exported model directory.
type Manifest struct {
	Format       string          `json:"format"`
	Name         string          `json:"name"`
	Architecture string          `json:"architecture"` // the plugin that wrote it (see Register)
	Source       string          `json:"source,omitempty"`
	Config       Dims            `json:"config"`
	ArchConfig   json.RawMessage `json:"arch_config,omitempty"` // the architecture's own config
	Tokenizer    string          `json:"tokenizer,omitempty"`   // the tokenizer's name, or "" for token ids only
	Inputs       IO              `json:"io"`
	Stages       []Stage         `json:"stages"`
	Weights      WeightsFile     `json:"weights"`
	Points       []Point         `json:"points"`
	Switches     []graphs.Switch `json:"switches,omitempty"`
	KVCache      []KV            `json:"kv_cache,omitempty"`
	// Whole names an optional one-graph copy of the model (the benchmark
	// baseline), written by export with --whole.
	Whole string `json:"whole,omitempty"`
	// WholeBytes is the size of the whole graph's file, when recorded.
	WholeBytes int64 `json:"whole_bytes,omitempty"`
	// GraphsVersion is the version of the architecture's stage graphs an
	// export holds. Exports cached by Resolve are made again when it is
	// older than the plugin's (see Versioned).
	GraphsVersion int `json:"graphs_version,omitempty"`
	// Boundaries are the sites that carry the residual stream between
	// stages, in call order ("resid.post_emb", ...): the planner may cut
	// there, and partial runs start and stop there.
	Boundaries []string `json:"boundaries,omitempty"`
	// WeightLocations say where ModelContext.Weight finds each standard
	// weight location.
	WeightLocations []WeightLocation `json:"weight_locations,omitempty"`
	// OutLayers are each layer's MLP output projection (the original's
	// out_layer kwarg of hooks at the MLP activations).
	OutLayers []OutLayer `json:"out_layers,omitempty"`
	// Aliases are an imported model's own names for its hook sites
	// (mlp_hidden for mlp.post_act, ...), from its hook map.
	Aliases []Alias `json:"aliases,omitempty"`
}

// Dims are the dimensions every architecture reports.
type Dims struct {
	NLayers  int `json:"n_layers"`
	DModel   int `json:"d_model"`
	NHeads   int `json:"n_heads"`
	NKVHeads int `json:"n_kv_heads,omitempty"` // key/value heads, when fewer than NHeads
	DHead    int `json:"d_head"`
	DFF      int `json:"d_ff"`
	NVocab   int `json:"n_vocab"`
	NCtx     int `json:"n_ctx"`
}

// Size is the model's size of a fixed dimension of the hook points
// (d_model, heads, d_head, d_ff, vocab; one is 1), or 0 for the
// dimensions a call decides (batch, tokens) and those the model does not
// fix (SAE widths).
func (d Dims) Size(dim hooks.Dim) int {
	switch dim {
	case hooks.Model:
		return d.DModel
	case hooks.Heads:
		return d.NHeads
	case hooks.HeadDim:
		return d.DHead
	case hooks.FF:
		return d.DFF
	case hooks.Vocab:
		return d.NVocab
	case hooks.One:
		return 1
	}
	return 0
}

// KVHeads is the number of key/value heads.
func (d Dims) KVHeads() int {
	if d.NKVHeads > 0 {
		return d.NKVHeads
	}
	return d.NHeads
}

// WeightLocation says how a standard weight location (ModelContext's
// WeightLocationType, e.g. "mlp.to_hidden") at a layer is read from the
// weights file: the tensor stored from checkpoint key Source, optionally
// split on one axis into (heads, rest), permuted, and broadcast.
type WeightLocation struct {
	Location  string `json:"location"`
	Layer     int    `json:"layer"` // -1 for locations that exist once
	Source    string `json:"source"`
	Split     *int   `json:"split,omitempty"`
	Heads     int    `json:"heads,omitempty"` // parts of the split (default: n_heads)
	Perm      []int  `json:"perm,omitempty"`
	Broadcast bool   `json:"broadcast,omitempty"`
}

// OutLayer names a layer's MLP output projection in the weights file
// (nn.Linear layout [D, F]); Bias is empty when it has none.
type OutLayer struct {
	Layer  int    `json:"layer"`
	Weight string `json:"weight"`
	Bias   string `json:"bias,omitempty"`
}

// IO names the graph inputs and outputs the runtime feeds and reads.
type IO struct {
	Tokens   string `json:"tokens"`              // int64 [B,T]
	Pad      string `json:"pad,omitempty"`       // bool [B,Tk], true at pads
	PrevLens string `json:"prev_lens,omitempty"` // int64 [B,1]
	Logits   string `json:"logits"`              // float32 [B,T,V]
}

// Stage is one graph file.
type Stage struct {
	Name string `json:"name"`
	File string `json:"file"`
	// Bytes is the file's size, when recorded (VerifyFiles checks it).
	Bytes int64 `json:"bytes,omitempty"`
}

// WeightsFile is the shared weights file.
type WeightsFile struct {
	File    string   `json:"file"`
	Bytes   int64    `json:"bytes"`
	Tensors []Weight `json:"tensors"`
}

// Weight is one initializer's place in the weights file (float32, C order).
type Weight struct {
	Name       string  `json:"name"`
	Source     string  `json:"source,omitempty"` // checkpoint key it came from
	Transposed bool    `json:"transposed,omitempty"`
	Dims       []int64 `json:"dims"`
	Offset     int64   `json:"offset"`
	Length     int64   `json:"length"`
}

// Point maps a hook site to the tensor that carries it.
type Point struct {
	Point  string `json:"point"`
	Layer  *int   `json:"layer"`
	Tensor string `json:"tensor"`
	Perm   []int  `json:"perm,omitempty"`
}

// Site returns the hook site of the entry.
func (p Point) Site() (hooks.Site, error) {
	pt, err := hooks.Parse(p.Point)
	if err != nil {
		return hooks.Site{}, err
	}
	layer := -1
	if p.Layer != nil {
		layer = *p.Layer
	}
	if pt.PerLayer() != (p.Layer != nil) {
		return hooks.Site{}, fmt.Errorf("point %s: layer %v does not fit a point that is per-layer=%v", p.Point, p.Layer, pt.PerLayer())
	}
	return hooks.Site{Point: pt, Layer: layer}, nil
}

// KV names the cache tensors of one layer.
type KV struct {
	Layer    int    `json:"layer"`
	PastK    string `json:"past_k"`
	PastV    string `json:"past_v"`
	PresentK string `json:"present_k"`
	PresentV string `json:"present_v"`
	Width    int    `json:"width"`
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := fileio.ReadLimited(filepath.Join(dir, ManifestFile), maxManifestBytes)
	if err != nil {
		if errors.Is(err, fileio.ErrTooLarge) {
			return nil, fmt.Errorf("%w: %w", ErrNotExported, err)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s has no %s", ErrNotExported, dir, ManifestFile)
		}
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: %s has format %q, this build reads %q (export it again)", ErrNotExported, dir, m.Format, Format)
	}
	if err := m.checkNames(dir); err != nil {
		return nil, err
	}
	return &m, nil
}

// IsExported reports whether dir holds a manifest.
func IsExported(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ManifestFile))
	return err == nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// LoadGraph reads the stage graphs of an exported directory and merges them
// into one model.
func LoadGraph(dir string, m *Manifest) (*onnxpb.ModelProto, error) {
	var stages []*onnxpb.ModelProto
	for _, s := range m.Stages {
		g, err := graphs.ReadModel(filepath.Join(dir, s.File))
		if err != nil {
			return nil, err
		}
		stages = append(stages, g)
	}
	if len(stages) == 1 {
		return stages[0], nil
	}
	return graphs.Merge(stages)
}
