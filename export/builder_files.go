package export

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// AddFile writes a file of the architecture's own into the exported folder
// (a tokenizer's vocabulary, ...), where the opener it registers finds it.
// name must be a plain file name that the export does not use already.
func (b *Builder) AddFile(name string, data []byte) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") ||
		name == ManifestFile || name == WeightsFileName || strings.HasSuffix(name, ".onnx") {
		return fmt.Errorf("export: file name %q is not a free plain file name", name)
	}
	if err := b.ctx.Err(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.dir, name), data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
