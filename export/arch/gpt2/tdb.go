package gpt2

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
)

// TDBConfig is config.json of a TDB checkpoint (the original's TransformerConfig).
type TDBConfig struct {
	Enc       string  `json:"enc"`
	CtxWindow int     `json:"ctx_window"`
	DModel    int     `json:"d_model"`
	NLayers   int     `json:"n_layers"`
	MAttn     float64 `json:"m_attn"`
	NHeads    int     `json:"n_heads"`
	MMLP      float64 `json:"m_mlp"`
}

// TDBDefaults are TransformerConfig's defaults for keys config.json omits.
var TDBDefaults = TDBConfig{Enc: "gpt2", CtxWindow: 1024, DModel: 256, NLayers: 2, MAttn: 1, NHeads: 8, MMLP: 4}

// NVocab is the GPT-2 tokenizer's vocabulary size (n_vocab is not part
// of the config: it comes from the encoding).
const NVocab = 50257

// ParseTDBConfig reads config.json, filling defaults, ignoring unknown keys,
// and derives the model dimensions.
func ParseTDBConfig(b []byte) (TDBConfig, Config, error) {
	c := TDBDefaults
	if err := json.Unmarshal(b, &c); err != nil {
		return c, Config{}, fmt.Errorf("%w: config.json: %v", export.ErrCheckpoint, err)
	}
	if c.Enc != "gpt2" {
		return c, Config{}, fmt.Errorf("%w: config.json enc %q: only the gpt2 encoding is known", export.ErrUnsupported, c.Enc)
	}
	dAttn := c.MAttn * float64(c.DModel)
	if dAttn != math.Trunc(dAttn) || int(dAttn) != c.DModel {
		return c, Config{}, fmt.Errorf("%w: config.json m_attn %v: only m_attn = 1 (d_attn = d_model) is supported", export.ErrUnsupported, c.MAttn)
	}
	if c.NHeads <= 0 || c.DModel%c.NHeads != 0 {
		return c, Config{}, fmt.Errorf("%w: config.json: d_model %d is not divisible by n_heads %d", export.ErrCheckpoint, c.DModel, c.NHeads)
	}
	g := Config{
		NLayers: c.NLayers,
		DModel:  c.DModel,
		NHeads:  c.NHeads,
		DHead:   c.DModel / c.NHeads,
		DFF:     int(float64(c.DModel) * c.MMLP),
		NVocab:  NVocab,
		NCtx:    c.CtxWindow,
	}
	if err := g.Validate(); err != nil {
		return c, g, fmt.Errorf("%w: %v", export.ErrCheckpoint, err)
	}
	return c, g, nil
}

// Checkpoint is a local TDB checkpoint folder: config.json and
// model_pieces/<state-dict key>.pt, one tensor per file.
type Checkpoint struct {
	Dir    string
	Config TDBConfig
	cfg    Config
}

// OpenCheckpoint reads config.json and checks that model_pieces holds
// exactly the keys the config needs (the original's strict load).
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", export.ErrCheckpoint, dir, err)
	}
	raw, cfg, err := ParseTDBConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	ck := &Checkpoint{Dir: dir, Config: raw, cfg: cfg}
	want := map[string]bool{}
	for _, k := range Keys(cfg) {
		want[k] = true
	}
	entries, err := os.ReadDir(filepath.Join(dir, "model_pieces"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", export.ErrCheckpoint, dir, err)
	}
	var extra []string
	for _, e := range entries {
		k, ok := strings.CutSuffix(e.Name(), ".pt")
		if !ok || e.IsDir() {
			continue
		}
		if want[k] {
			delete(want, k)
		} else {
			extra = append(extra, k)
		}
	}
	if len(want) > 0 {
		var missing []string
		for k := range want {
			missing = append(missing, k)
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("%w: %s: missing pieces %s", export.ErrCheckpoint, dir, strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, fmt.Errorf("%w: %s: unexpected pieces %s (config.json says %d layers)", export.ErrCheckpoint, dir, strings.Join(extra, ", "), cfg.NLayers)
	}
	return ck, nil
}

// Architecture implements export.Source.
func (c *Checkpoint) Architecture() string { return Name }

// Describe implements export.Source.
func (c *Checkpoint) Describe() string { return c.Dir }

// Build implements export.Source.
func (c *Checkpoint) Build(ctx context.Context, b *export.Builder) error {
	return build(ctx, b, c.cfg, c.Tensor, sourceInfo{Format: "tdb", TDB: &c.Config})
}

// PiecePath is the file holding a state-dict key.
func (c *Checkpoint) PiecePath(key string) string {
	return filepath.Join(c.Dir, "model_pieces", key+".pt")
}

// Tensor implements Source: it reads one piece (views and half precision
// are materialised as float32) and checks its shape against the config.
func (c *Checkpoint) Tensor(key string) ([]float32, []int, error) {
	want, err := StateDictShape(c.cfg, key)
	if err != nil {
		return nil, nil, err
	}
	path := c.PiecePath(key)
	t, err := torchpt.LoadTensor(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", export.ErrCheckpoint, err)
	}
	if t.F32 == nil {
		return nil, nil, fmt.Errorf("%w: %s holds %s values, not floating point", export.ErrCheckpoint, path, t.DType)
	}
	if fmt.Sprint(t.Shape) != fmt.Sprint(want) {
		return nil, nil, fmt.Errorf("%w: %s has shape %v, config.json needs %v", export.ErrCheckpoint, path, t.Shape, want)
	}
	return t.F32, t.Shape, nil
}

// Dims is the checkpoint's model config.
func (c *Checkpoint) Dims() Config { return c.cfg }
