package gpt2

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/bpe"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// Name is the architecture's name in manifests.
const Name = "gpt2"

// GraphsVersion is the version of the stage graphs this package builds: 2
// takes the new tokens' pad flags with a Gather instead of a Slice (ONNX
// Runtime 1.29's plugin CUDA provider crashes in Slice); 3 is the first
// written by the plugin (manifest format 2); 4 adds the softmax denominator
// computed from the fused softmax, taken where it is only read.
const GraphsVersion = 4

// The public TDB checkpoints by name.
var models = map[string]string{
	"gpt2-small":  "https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/small",
	"gpt2-medium": "https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/medium",
	"gpt2-large":  "https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/large",
	"gpt2-xl":     "https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/xl",
}

func init() {
	export.Register(plugin{})
	tokenizer.Register(Name, func(string) (tokenizer.Tokenizer, error) { return bpe.GPT2() })
	for name, url := range models {
		export.RegisterModel(name, url)
	}
}

// plugin is GPT-2 as an export.Architecture.
type plugin struct{}

func (plugin) Name() string { return Name }

// GraphsVersion makes Resolve export cached models of older graphs again.
func (plugin) GraphsVersion() int { return GraphsVersion }

// Open reads a TDB checkpoint folder (config.json + model_pieces/) or a
// Hugging Face GPT2LMHeadModel folder (config.json + safetensors).
func (plugin) Open(dir string) (export.Source, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s has no config.json", export.ErrNotMine, dir)
	}
	switch {
	case isHFConfig(b):
		return OpenHF(dir)
	case isDir(filepath.Join(dir, "model_pieces")):
		return OpenCheckpoint(dir)
	}
	return nil, fmt.Errorf("%w: %s is neither a TDB checkpoint (model_pieces/) nor a Hugging Face GPT-2 folder", export.ErrNotMine, dir)
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// Fetch downloads a remote TDB checkpoint folder.
func (plugin) Fetch(ctx context.Context, c *fetch.Cache, loc fetch.Location) (string, error) {
	cfgBytes, err := c.Read(ctx, loc.Join("config.json"))
	if err != nil {
		return "", fmt.Errorf("load %s: %w", loc.URL(), err)
	}
	_, cfg, err := ParseTDBConfig(cfgBytes)
	if err != nil {
		return "", fmt.Errorf("load %s: %w", loc.URL(), err)
	}
	var locs []fetch.Location
	for _, k := range Keys(cfg) {
		locs = append(locs, loc.Join("model_pieces", k+".pt"))
	}
	if _, err := c.FetchAll(ctx, locs); err != nil {
		return "", fmt.Errorf("load %s: %w", loc.URL(), err)
	}
	return filepath.Dir(c.Path(loc.Join("config.json"))), nil
}

// sourceInfo is the architecture config recorded in the manifest: where
// the weights came from.
type sourceInfo struct {
	Format string     `json:"format"` // tdb, hf or random
	TDB    *TDBConfig `json:"tdb,omitempty"`
	HF     *HFConfig  `json:"hf,omitempty"`
	Seed   uint64     `json:"seed,omitempty"`
}

// tensorFunc reads a tensor by TDB state-dict key, in TDB's layout.
type tensorFunc func(key string) ([]float32, []int, error)

// build writes a GPT-2 export: weights in the order the graphs read them,
// the stage graphs, and the manifest's architecture fields.
func build(ctx context.Context, b *export.Builder, cfg Config, tensor tensorFunc, info sourceInfo) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", export.ErrCheckpoint, err)
	}
	man := b.Manifest()
	js, err := json.Marshal(info)
	if err != nil {
		return err
	}
	man.Config, man.ArchConfig, man.Tokenizer = cfg.Dims(), js, Name
	man.GraphsVersion = GraphsVersion
	man.Inputs = export.IO{Tokens: graphs.InTokens, Pad: graphs.InPad, PrevLens: graphs.InPrevLens, Logits: graphs.OutLogits}
	man.Switches = Switches(cfg)
	for _, spec := range WeightSpecs(cfg) {
		data, shape, err := tensor(spec.Source)
		if err != nil {
			return err
		}
		want := spec.Dims
		if spec.Transpose {
			want = []int64{spec.Dims[1], spec.Dims[0]}
		}
		if fmt.Sprint(toInt64(shape)) != fmt.Sprint(want) {
			return fmt.Errorf("%w: %s has shape %v, the config needs %v", export.ErrCheckpoint, spec.Source, shape, want)
		}
		if spec.Transpose {
			data = export.Transpose2D(data, shape[0], shape[1])
		}
		if err := b.AddWeight(spec.Name, spec.Source, data, spec.Dims, spec.Transpose); err != nil {
			return err
		}
	}
	table, err := b.Weights()
	if err != nil {
		return err
	}
	stages, err := Stages(cfg, table)
	if err != nil {
		return err
	}
	if err := b.AddStages(StageNames(cfg), stages); err != nil {
		return err
	}
	b.AddPoints(Points(cfg))
	man.KVCache = export.StandardKVCache(cfg.NLayers, cfg.DModel)
	for l := 0; l < cfg.NLayers; l++ {
		man.OutLayers = append(man.OutLayers, export.OutLayer{Layer: l,
			Weight: fmt.Sprintf("xf_layers.%d.mlp.out_layer.weight", l), Bias: fmt.Sprintf("xf_layers.%d.mlp.out_layer.bias", l)})
	}
	man.Boundaries = export.ResidualBoundaries(cfg.NLayers)
	man.WeightLocations = weightLocations(cfg)
	return nil
}

func toInt64(s []int) []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = int64(d)
	}
	return out
}
