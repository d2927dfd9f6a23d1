package export

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
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
