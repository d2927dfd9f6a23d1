package llama

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Name is the architecture's name in manifests.
const Name = "llama"

// GraphsVersion is the version of the stage graphs this package builds: 2
// adds the softmax denominator computed from the fused softmax, taken where
// it is only read.
const GraphsVersion = 2

func init() { export.Register(plugin{}) }

// plugin is the Llama family as an export.Architecture.
type plugin struct{}

func (plugin) Name() string { return Name }

// GraphsVersion makes Resolve export cached models of older graphs again.
func (plugin) GraphsVersion() int { return GraphsVersion }

// Open opens a Hugging Face LlamaForCausalLM folder; any other folder is
// export.ErrNotMine.
func (plugin) Open(dir string) (export.Source, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil || !looksLlama(b) {
		return nil, fmt.Errorf("%w: %s is not a Hugging Face Llama folder", export.ErrNotMine, dir)
	}
	return OpenCheckpoint(dir)
}

// Architecture implements export.Source.
func (c *Checkpoint) Architecture() string { return Name }

// Build writes the export: the weights in the order the graphs read them,
// the stage graphs, the tokenizer.json when the folder has one, and the
// manifest's architecture fields. It closes nothing: the caller owns c.
func (c *Checkpoint) Build(ctx context.Context, b *export.Builder) error {
	cfg := c.Config
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", export.ErrCheckpoint, err)
	}
	man := b.Manifest()
	js, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	man.Config, man.ArchConfig, man.GraphsVersion = cfg.Dims(), js, GraphsVersion
	man.Inputs = export.IO{Tokens: graphs.InTokens, Pad: graphs.InPad, PrevLens: graphs.InPrevLens, Logits: graphs.OutLogits}
	man.Switches = Switches(cfg)
	if err := c.addWeights(ctx, b); err != nil {
		return err
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
	man.KVCache = export.StandardKVCache(cfg.NLayers, cfg.KVWidth())
	for l := 0; l < cfg.NLayers; l++ {
		man.OutLayers = append(man.OutLayers, export.OutLayer{Layer: l, Weight: fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", l)})
	}
	man.Boundaries = export.ResidualBoundaries(cfg.NLayers)
	man.WeightLocations = weightLocations(cfg)
	man.Aliases = aliases(cfg)
	return c.addTokenizer(b)
}

// addWeights copies every tensor the graphs read into the weights file,
// transposed to [in,out] where the graphs multiply by it.
func (c *Checkpoint) addWeights(ctx context.Context, b *export.Builder) error {
	for _, spec := range Weights(c.Config) {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, shape, err := c.Tensor(spec.Source)
		if err != nil {
			return fmt.Errorf("%w: %v", export.ErrCheckpoint, err)
		}
		want := spec.Dims
		if spec.Transpose {
			want = []int64{spec.Dims[1], spec.Dims[0]}
		}
		if !sameShape(shape, want) {
			return fmt.Errorf("%w: %s has shape %v, the config needs %v", export.ErrCheckpoint, spec.Source, shape, want)
		}
		if spec.Transpose {
			data = export.Transpose2D(data, shape[0], shape[1])
		}
		if err := b.AddWeight(spec.Name, spec.Source, data, spec.Dims, spec.Transpose); err != nil {
			return err
		}
	}
	return nil
}

// Dims are the dimensions the manifest records for every architecture.
func (c Config) Dims() export.Dims {
	d := export.Dims{NLayers: c.NLayers, DModel: c.DModel, NHeads: c.NHeads, DHead: c.DHead,
		DFF: c.DFF, NVocab: c.NVocab, NCtx: c.NCtx}
	if c.NKVHeads != c.NHeads {
		d.NKVHeads = c.NKVHeads
	}
	return d
}

// ManifestConfig reads the Llama config an exported model's manifest holds.
func ManifestConfig(m *export.Manifest) (Config, error) {
	if m.Architecture != Name {
		return Config{}, fmt.Errorf("%w: model of architecture %q", ErrNotCheckpoint, m.Architecture)
	}
	var c Config
	if err := json.Unmarshal(m.ArchConfig, &c); err != nil {
		return Config{}, fmt.Errorf("%w: manifest arch_config: %v", ErrConfig, err)
	}
	return c, c.Validate()
}

// aliases are the common point names (resid_pre, mlp_hidden, ...) that
// imported graphs' hook maps use, as names for this model's sites.
func aliases(c Config) []export.Alias {
	var out []export.Alias
	names := make([]string, 0, len(export.KnownPointNames))
	for n := range export.KnownPointNames {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		target := export.KnownPointNames[name]
		if target == name {
			continue
		}
		if target == export.BlockInput {
			for l := 0; l < c.NLayers; l++ {
				out = append(out, alias(name, l, hooks.ResidualInto(l)))
			}
			continue
		}
		p, err := hooks.Parse(target)
		if err != nil {
			continue
		}
		if !p.PerLayer() {
			out = append(out, alias(name, -1, hooks.Site{Point: p, Layer: -1}))
			continue
		}
		for l := 0; l < c.NLayers; l++ {
			out = append(out, alias(name, l, hooks.Site{Point: p, Layer: l}))
		}
	}
	return out
}

func alias(name string, layer int, site hooks.Site) export.Alias {
	a := export.Alias{Name: name, Point: site.Point.Path(), Tensor: PointTensor(site.Point, site.Layer)}
	if layer >= 0 {
		l := layer
		a.Layer = &l
	}
	if site.Layer >= 0 {
		l := site.Layer
		a.PointLayer = &l
	}
	return a
}

// weightLocations says where ModelContext.Weight finds the standard weight
// locations in the Hugging Face tensors (nn.Linear layout [out,in]): the
// query/key/value projections split into heads, mlp.to_hidden is gate_proj
// (the weight behind mlp.pre_act), and the RMSNorm weights are the
// layer-norm gains. There are no biases and no position embedding; with
// grouped-query attention the key and value projections have fewer heads
// than the standard [heads, d_model, d_head] shape, so they are left out.
func weightLocations(c Config) []export.WeightLocation {
	ax := func(a int) *int { return &a }
	unembed := "lm_head.weight"
	if c.TiedEmbed {
		unembed = "model.embed_tokens.weight"
	}
	out := []export.WeightLocation{
		{Location: "embedding", Layer: -1, Source: "model.embed_tokens.weight"},
		{Location: "unembedding", Layer: -1, Source: unembed, Perm: []int{1, 0}},
		{Location: "layer_norm_gain.final", Layer: -1, Source: "model.norm.weight", Broadcast: true},
	}
	for l := 0; l < c.NLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		out = append(out,
			export.WeightLocation{Location: "mlp.to_hidden", Layer: l, Source: p + "mlp.gate_proj.weight", Perm: []int{1, 0}},
			export.WeightLocation{Location: "mlp.to_residual", Layer: l, Source: p + "mlp.down_proj.weight", Perm: []int{1, 0}},
			export.WeightLocation{Location: "attn.to_query", Layer: l, Source: p + "self_attn.q_proj.weight", Split: ax(0), Heads: c.NHeads, Perm: []int{0, 2, 1}},
			export.WeightLocation{Location: "attn.to_residual", Layer: l, Source: p + "self_attn.o_proj.weight", Split: ax(1), Heads: c.NHeads, Perm: []int{1, 2, 0}},
			export.WeightLocation{Location: "layer_norm_gain.pre_attn", Layer: l, Source: p + "input_layernorm.weight"},
			export.WeightLocation{Location: "layer_norm_gain.pre_mlp", Layer: l, Source: p + "post_attention_layernorm.weight"},
		)
		if c.NKVHeads == c.NHeads {
			out = append(out,
				export.WeightLocation{Location: "attn.to_key", Layer: l, Source: p + "self_attn.k_proj.weight", Split: ax(0), Perm: []int{0, 2, 1}},
				export.WeightLocation{Location: "attn.to_value", Layer: l, Source: p + "self_attn.v_proj.weight", Split: ax(0), Perm: []int{0, 2, 1}},
			)
		}
	}
	return out
}

// addTokenizer copies the folder's tokenizer.json into the export and
// names the generic byte-level BPE as the model's tokenizer. A folder
// without one is driven by token ids.
func (c *Checkpoint) addTokenizer(b *export.Builder) error {
	data, err := os.ReadFile(filepath.Join(c.Dir, TokenizerFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", TokenizerFile, err)
	}
	return addTokenizerFile(b, data)
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
