// Package export turns checkpoints into exported model directories and
// reads them back. An exported directory holds manifest.json, one .onnx graph
// per stage (external data references into one weights file) and that
// weights file, with page-aligned offsets so every session can map it and
// share its pages.
//
// Sources: a local TDB checkpoint folder (config.json + model_pieces/*.pt),
// the public blob locations (https://openaipublic.blob.core.windows.net/...,
// az://openaipublic/...) and the names gpt2-small|medium|large|xl, fetched
// into an atomic local cache; and any ONNX transformer plus a hook map.
package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// GPT2GraphsVersion is the version of the GPT-2 stage graphs WriteGPT2
// builds: 2 takes the new tokens' pad flags with a Gather instead of a Slice
// (ONNX Runtime 1.29's plugin CUDA provider crashes in Slice).
const GPT2GraphsVersion = 2

// Format is the manifest format written by this version.
const Format = "onnx-tdb/1"

// ManifestFile is the manifest's name inside an exported directory.
const ManifestFile = "manifest.json"

// ErrNotExported is returned when a folder is not an exported model.
var ErrNotExported = errors.New("not an exported model directory")

// Manifest describes an exported model directory.
type Manifest struct {
	Format       string            `json:"format"`
	Name         string            `json:"name"`
	Architecture string            `json:"architecture"` // "gpt2", or "onnx" for an imported graph
	Source       string            `json:"source,omitempty"`
	Config       graphs.GPT2Config `json:"config"`
	Tokenizer    string            `json:"tokenizer,omitempty"` // "gpt2", or "" for token ids only
	Inputs       IO                `json:"io"`
	Stages       []Stage           `json:"stages"`
	Weights      WeightsFile       `json:"weights"`
	Points       []Point           `json:"points"`
	Switches     []graphs.Switch   `json:"switches,omitempty"`
	KVCache      []KV              `json:"kv_cache,omitempty"`
	// Whole names an optional one-graph copy of the model (the benchmark
	// baseline), written by export with --whole.
	Whole string `json:"whole,omitempty"`
	// WholeBytes is the size of the whole graph's file, when recorded.
	WholeBytes int64 `json:"whole_bytes,omitempty"`
	// GraphsVersion is the version of the GPT-2 stage graphs an export
	// holds (GPT2GraphsVersion when written; 0 before versions were kept).
	// Exports cached by Resolve are made again when it is older.
	GraphsVersion int `json:"graphs_version,omitempty"`
	// Aliases are an imported model's own names for its hook sites
	// (mlp_hidden for mlp.post_act, ...), from its hook map.
	Aliases []Alias `json:"aliases,omitempty"`
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
	b, err := readLimited(filepath.Join(dir, ManifestFile), maxManifestBytes)
	if err != nil {
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
