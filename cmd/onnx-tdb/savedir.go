package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
)

// errNotNpyFolder: an output folder of .npy files would replace a folder
// that holds something else.
var errNotNpyFolder = errors.New("exists and holds files other than .npy")

// npyFile is one array of an output folder.
type npyFile struct {
	name string
	t    *hooks.Tensor
}

// writeNpyFolder writes files into dir as exports are written: under a
// temporary name, renamed into place when every file is complete, so an
// interrupted or failed run leaves nothing under dir (and a killed one a
// temporary folder the next writer removes). A dir that exists is replaced
// only if it holds nothing but .npy files (an earlier run's output).
func writeNpyFolder(ctx context.Context, dir string, files []npyFile) error {
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".npy") {
				return fmt.Errorf("%s %w (%s): choose another folder", dir, errNotNpyFolder, e.Name())
			}
		}
	} else if !os.IsNotExist(err) {
		return err
	}
	return atomicdir.WriteContext(ctx, dir, func(ctx context.Context, tmp string) error {
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := npy.Write(filepath.Join(tmp, f.name), f.t.Shape, f.t.Data); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}
