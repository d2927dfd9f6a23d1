package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestDirRecordsFromAFolderAndAURL(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "2"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := `{"neuron_id": {"layer_index": 2, "neuron_index": 9}, "most_positive_activation_records": []}`
	os.WriteFile(filepath.Join(dir, "2", "9.json"), []byte(rec), 0o644)
	os.WriteFile(filepath.Join(dir, "2", "8.json"), []byte(`{not json`), 0o644)
	files := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer files.Close()
	for _, base := range []string{dir, files.URL + "/"} {
		load := DirRecords(base)
		got, err := load(context.Background(), 2, 9)
		if err != nil || string(got) != rec {
			t.Fatalf("%s: %s %v", base, got, err)
		}
		if _, err := load(context.Background(), 2, 7); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: a missing unit: %v", base, err)
		}
		if _, err := load(context.Background(), 2, 8); err == nil {
			t.Fatalf("%s: a file that is not JSON was accepted", base)
		}
	}
}

func ExampleDirRecords() {
	dir, _ := os.MkdirTemp("", "records-")
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "0"), 0o755)
	os.WriteFile(filepath.Join(dir, "0", "5.json"), []byte(`{"neuron_id": {"layer_index": 0, "neuron_index": 5}}`), 0o644)

	load := DirRecords(dir) // what `serve --records NAME=DIR` serves at /v1/records/NAME/{layer}/{unit}
	rec, err := load(context.Background(), 0, 5)
	fmt.Println(string(rec), err)
	_, err = load(context.Background(), 0, 6)
	fmt.Println(errors.Is(err, ErrNotFound))
	// Output:
	// {"neuron_id": {"layer_index": 0, "neuron_index": 5}} <nil>
	// true
}
