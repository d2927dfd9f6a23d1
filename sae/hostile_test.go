package sae

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
	"github.com/onnx-tdb/onnx-tdb/internal/hostile"
)

// TestHostileFoldersRefused: converted folders whose manifest claims more than
// weights.bin holds, or names files outside the folder, are refused before
// anything is allocated from the claims or handed to ONNX Runtime.
func TestHostileFoldersRefused(t *testing.T) {
	for _, f := range hostile.SAEFolders() {
		t.Run(f.Name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), f.Name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, b := range f.Files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			alloc := hostile.Allocated(func() {
				var ae *Autoencoder
				if ae, err = Load(dir); err == nil {
					ae.Close()
				}
			})
			if !errors.Is(err, ErrNotConverted) {
				t.Fatalf("%s (%s): err = %v, want ErrNotConverted", f.Name, f.Why, err)
			}
			if alloc > hostile.MaxAlloc {
				t.Errorf("allocated %d MB refusing it", alloc>>20)
			}
		})
	}
}

// TestHostileStateDictsRefused: the hostile .pt files, given as SAE files,
// are refused by the converter with bounded memory.
func TestHostileStateDictsRefused(t *testing.T) {
	root := t.TempDir()
	for _, f := range hostile.PT() {
		t.Run(f.Name, func(t *testing.T) {
			path := filepath.Join(root, f.Name)
			if err := os.WriteFile(path, f.Bytes, 0o644); err != nil {
				t.Fatal(err)
			}
			var err error
			alloc := hostile.Allocated(func() {
				var ae *Autoencoder
				if ae, err = Load(path, WithCache(filepath.Join(root, "cache"))); err == nil {
					ae.Close()
				}
			})
			if !errors.Is(err, torchpt.ErrCorrupt) && !errors.Is(err, torchpt.ErrUnsupported) {
				t.Fatalf("err = %v", err)
			}
			if alloc > hostile.MaxAlloc {
				t.Errorf("allocated %d MB refusing it", alloc>>20)
			}
		})
	}
}
