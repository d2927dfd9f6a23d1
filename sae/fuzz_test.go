package sae

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
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
		buildGraph(m)
	})
}

// FuzzFromStateDict: SAE .pt files come from anywhere; what torchpt reads
// from them is checked by fromStateDict without a panic, and what passes
// has the sizes its tensors say.
func FuzzFromStateDict(f *testing.F) {
	src := f.TempDir()
	for i, r := range []randomSAE{{nLatents: 8, nInputs: 4, freq: ones(8)}, {nLatents: 6, nInputs: 3, act: Activation{Name: TopK, K: 2, PostAct: ReLU}, freq: ones(6), seed: 3}} {
		b, err := os.ReadFile(r.save(f, src, fmt.Sprintf("%d.pt", i)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, h := range hostile.PT() {
		if len(h.Bytes) < 4096 {
			f.Add(h.Bytes)
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "in.pt")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sd, err := torchpt.LoadStateDict(path)
		if err != nil {
			return
		}
		p, err := fromStateDict(sd)
		if err != nil {
			return
		}
		if len(p.encoder) != p.nLatents*p.nInputs || len(p.decoder) != p.nLatents*p.nInputs || len(p.preBias) != p.nInputs {
			t.Fatalf("accepted sizes n=%d N=%d with %d/%d/%d values", p.nInputs, p.nLatents, len(p.encoder), len(p.decoder), len(p.preBias))
		}
	})
}
