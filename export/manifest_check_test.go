package export

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func writeManifest(t *testing.T, m *Manifest) string {
	t.Helper()
	dir := t.TempDir()
	if err := writeJSON(filepath.Join(dir, ManifestFile), m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestReadManifestRefusesFilesOutside: stage, weights and whole-graph names
// that leave the folder are refused, as are weight tables outside the file.
func TestReadManifestRefusesFilesOutside(t *testing.T) {
	base := func() *Manifest {
		return &Manifest{Format: Format, Stages: []Stage{{Name: "s", File: "s.onnx"}},
			Weights: WeightsFile{File: WeightsFileName, Bytes: 100, Tensors: []Weight{{Name: "w", Offset: 0, Length: 100}}}}
	}
	if _, err := ReadManifest(writeManifest(t, base())); err != nil {
		t.Fatalf("a plain manifest: %v", err)
	}
	for name, edit := range map[string]func(m *Manifest){
		"stage ..":       func(m *Manifest) { m.Stages[0].File = "../../x.onnx" },
		"stage abs":      func(m *Manifest) { m.Stages[0].File = "/etc/x.onnx" },
		"stage inner ..": func(m *Manifest) { m.Stages[0].File = "a/../../x.onnx" },
		"stage empty":    func(m *Manifest) { m.Stages[0].File = "" },
		"stage dot":      func(m *Manifest) { m.Stages[0].File = "." },
		"weights ..":     func(m *Manifest) { m.Weights.File = "../weights.bin" },
		"whole abs":      func(m *Manifest) { m.Whole = "/tmp/whole.onnx" },
		"tensor past":    func(m *Manifest) { m.Weights.Tensors[0].Offset = 50 },
		"tensor neg":     func(m *Manifest) { m.Weights.Tensors[0].Offset = -8 },
	} {
		m := base()
		edit(m)
		if _, err := ReadManifest(writeManifest(t, m)); !errors.Is(err, ErrNotExported) {
			t.Errorf("%s: err = %v, want ErrNotExported", name, err)
		}
	}
}

// TestResolveRebuildsDamagedExport: a cached export with a truncated weights
// file or a missing stage graph is exported again, not used.
func TestResolveRebuildsDamagedExport(t *testing.T) {
	o := ResolveOptions{Fetch: fetch.Options{Dir: t.TempDir(), Progress: io.Discard}}
	golden.RequireShared(t, "model")
	dir, err := Resolve(context.Background(), golden.ModelDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyFiles(dir, m); err != nil {
		t.Fatalf("a fresh export: %v", err)
	}
	for name, damage := range map[string]func() error{
		"truncated weights": func() error { return os.Truncate(filepath.Join(dir, m.Weights.File), m.Weights.Bytes/2) },
		"missing stage":     func() error { return os.Remove(filepath.Join(dir, m.Stages[len(m.Stages)-1].File)) },
		"empty stage":       func() error { return os.Truncate(filepath.Join(dir, m.Stages[0].File), 0) },
	} {
		if err := damage(); err != nil {
			t.Fatal(err)
		}
		if err := VerifyFiles(dir, m); !errors.Is(err, ErrDamaged) {
			t.Fatalf("%s: VerifyFiles = %v", name, err)
		}
		again, err := Resolve(context.Background(), golden.ModelDir(), o)
		if err != nil || again != dir {
			t.Fatalf("%s: resolve: %s %v", name, again, err)
		}
		m2, err := ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyFiles(dir, m2); err != nil {
			t.Fatalf("%s: not rebuilt: %v", name, err)
		}
	}
}

// TestSweepCacheOnlyModelFolders: leftovers in the model folders go; a
// tool folder's files that merely look like leftovers stay.
func TestSweepCacheOnlyModelFolders(t *testing.T) {
	root := t.TempDir()
	old := time.Now().Add(-time.Hour)
	mk := func(rel string) string {
		p := filepath.Join(root, rel)
		os.MkdirAll(p, 0o755)
		os.Chtimes(p, old, old)
		return p
	}
	stale := mk("exported/local/m.tmp-1")
	tool := mk("azurite/node_modules/x.tmp-2")
	sweepCache(root)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("leftover kept: %v", err)
	}
	if _, err := os.Stat(tool); err != nil {
		t.Errorf("tool folder swept: %v", err)
	}
}
