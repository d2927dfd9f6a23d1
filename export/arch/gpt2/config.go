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

// Validate checks that the dimensions are positive, fit together and stay
// within export's config limits.
func (c Config) Validate() error {
	switch {
	case c.NLayers <= 0 || c.DModel <= 0 || c.NHeads <= 0 || c.DHead <= 0 || c.DFF <= 0 || c.NVocab <= 0 || c.NCtx <= 0:
		return fmt.Errorf("gpt2 config %+v: every dimension must be positive", c)
	case c.NHeads*c.DHead != c.DModel:
		return fmt.Errorf("gpt2 config: n_heads*d_head = %d*%d != d_model %d", c.NHeads, c.DHead, c.DModel)
	}
	if err := export.CheckConfigLimits(c.Dims()); err != nil {
		return fmt.Errorf("gpt2 config: %w", err)
	}
	return nil
}

// Dims are the config as the manifest's architecture-neutral dimensions.
func (c Config) Dims() export.Dims {
	return export.Dims{NLayers: c.NLayers, DModel: c.DModel, NHeads: c.NHeads, DHead: c.DHead, DFF: c.DFF, NVocab: c.NVocab, NCtx: c.NCtx}
}
