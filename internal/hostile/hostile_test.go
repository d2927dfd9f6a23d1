package hostile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCommittedConfigsMatch: testdata/hostile/config holds Configs() as files
// for readers outside Go; they must not drift from the generator.
func TestCommittedConfigsMatch(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "hostile", "config")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(Configs()) {
		t.Errorf("%d committed files, %d configs", len(ents), len(Configs()))
	}
	for _, f := range Configs() {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil || !bytes.Equal(b, f.Bytes) {
			t.Errorf("%s: committed copy differs (%v); run go run ./testdata/hostile -out testdata/hostile/out and copy", f.Name, err)
		}
	}
}
