package sae

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/hostile"
)

// FuzzReadManifest: a converted folder's sae.json may come from anywhere
// (a shared cache, a download). Reading it never panics, and what passes
// lies inside weights.bin.
func FuzzReadManifest(f *testing.F) {
	for _, h := range hostile.SAEFolders() {
		if m := h.Files["sae.json"]; len(m) < 4096 {
			f.Add(m)
		}
	}
	f.Add([]byte(`{"format":"onnx-tdb-sae/1","n_inputs":2,"n_latents":2,"activation":{"name":"TopK","k":1,"postact_fn":"ReLU"},"graph":"sae.onnx","weights":"weights.bin","tensors":{}}`))
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, weightsName), make([]byte, 256), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, manifestName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := readManifest(dir)
		if err != nil {
			return
		}
		for key, ref := range m.Tensors {
			if ref.Offset < 0 || ref.Offset+ref.Length > 256 {
				t.Fatalf("%s at %d+%d accepted", key, ref.Offset, ref.Length)
			}
		}
		buildGraph(m.NInputs, m.NLatents, m.Activation, m.Weights, m.Tensors)
	})
}
