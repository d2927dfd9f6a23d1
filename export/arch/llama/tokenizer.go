package llama

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer/hfbpe"
)

// addTokenizerFile checks a tokenizer.json, copies it into the export and
// names the generic byte-level BPE as the model's tokenizer.
func addTokenizerFile(b *export.Builder, data []byte) error {
	if _, err := hfbpe.Parse(data); err != nil {
		return fmt.Errorf("%w: %s: %v", export.ErrCheckpoint, TokenizerFile, err)
	}
	if err := b.AddFile(hfbpe.FileName, data); err != nil {
		return err
	}
	b.Manifest().Tokenizer = hfbpe.Name
	return nil
}
