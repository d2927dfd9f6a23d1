package gpt2

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/export"
)

// Config holds the dimensions of a GPT-2 model.
type Config struct {
	NLayers int `json:"n_layers"`
	DModel  int `json:"d_model"`
	NHeads  int `json:"n_heads"`
	DHead   int `json:"d_head"`
	DFF     int `json:"d_ff"`
	NVocab  int `json:"n_vocab"`
	NCtx    int `json:"n_ctx"`
}

// Limits bound what a config may ask for, so a config file from an
// arbitrary URL cannot make the exporter allocate without end before a
// single weight is read. They are far above any released GPT-2 (xl: 48
// layers, d_model 1600, 1.6e9 parameters).
var Limits = struct {
	NLayers, DModel, NHeads, DFF, NVocab, NCtx int
	Params                                     int64
}{NLayers: 1024, DModel: 1 << 16, NHeads: 1024, DFF: 1 << 18, NVocab: 1 << 21, NCtx: 1 << 20, Params: 1 << 36}

// Validate checks that the dimensions are positive, fit together and stay
// within Limits.
func (c Config) Validate() error {
	switch {
	case c.NLayers <= 0 || c.DModel <= 0 || c.NHeads <= 0 || c.DHead <= 0 || c.DFF <= 0 || c.NVocab <= 0 || c.NCtx <= 0:
		return fmt.Errorf("gpt2 config %+v: every dimension must be positive", c)
	case c.NLayers > Limits.NLayers || c.DModel > Limits.DModel || c.NHeads > Limits.NHeads ||
		c.DFF > Limits.DFF || c.NVocab > Limits.NVocab || c.NCtx > Limits.NCtx:
		return fmt.Errorf("gpt2 config %+v: a dimension exceeds the limits %+v", c, Limits)
	case c.NHeads*c.DHead != c.DModel:
		return fmt.Errorf("gpt2 config: n_heads*d_head = %d*%d != d_model %d", c.NHeads, c.DHead, c.DModel)
	}
	if p := c.Params(); p > Limits.Params {
		return fmt.Errorf("gpt2 config: %d parameters exceed the limit of %d", p, Limits.Params)
	}
	return nil
}

// Params is the number of parameters (embeddings and unembedding included).
func (c Config) Params() int64 {
	D, F, V, L, T := int64(c.DModel), int64(c.DFF), int64(c.NVocab), int64(c.NLayers), int64(c.NCtx)
	perLayer := 4*D*D + 4*D + 2*D*F + F + D + 4*D
	return 2*V*D + T*D + L*perLayer + 2*D
}

// Dims are the config as the manifest's architecture-neutral dimensions.
func (c Config) Dims() export.Dims {
	return export.Dims{NLayers: c.NLayers, DModel: c.DModel, NHeads: c.NHeads, DHead: c.DHead, DFF: c.DFF, NVocab: c.NVocab, NCtx: c.NCtx}
}
