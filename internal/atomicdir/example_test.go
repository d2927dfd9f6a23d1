package atomicdir_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
)

// A folder written with WriteContext appears whole or not at all; Sweep
// removes what killed writers left in a cache.
func ExampleWriteContext() {
	root, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(root)
	out := filepath.Join(root, "model")

	err := atomicdir.WriteContext(context.Background(), out, func(ctx context.Context, tmp string) error {
		return os.WriteFile(filepath.Join(tmp, "manifest.json"), []byte("{}"), 0o644)
	}, nil)
	fmt.Println(err)

	removed, freed, _ := atomicdir.Sweep(root) // nothing left over: no writer was killed
	fmt.Println(len(removed), freed)
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		fmt.Println(e.Name())
	}
	// Output:
	// <nil>
	// 0 0
	// model
}
