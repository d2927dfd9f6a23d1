package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCacheListAndPrune: list shows exports, SAEs, checkpoints and
// leftovers with sizes; prune removes leftovers always, old entries with
// --older-than, and leaves the tool folders alone.
func TestCacheListAndPrune(t *testing.T) {
	root := t.TempDir()
	mk := func(rel, file string, size int, age time.Duration) string {
		dir := filepath.Join(root, rel)
		os.MkdirAll(dir, 0o755)
		p := filepath.Join(dir, file)
		os.WriteFile(p, make([]byte, size), 0o644)
		old := time.Now().Add(-age)
		os.Chtimes(p, old, old)
		os.Chtimes(dir, old, old)
		return dir
	}
	oldExport := mk("exported/local/a-1", "manifest.json", 1000, 90*24*time.Hour)
	newExport := mk("exported/local/b-2", "manifest.json", 2000, time.Minute)
	sae := mk("sae/x", "sae.json", 300, time.Hour)
	ck := mk("blobs/acct/c/gpt2/small", "config.json", 10, 100*24*time.Hour)
	left := mk("exported/local/c-3.tmp-abc", "weights.bin", 5000, time.Hour)
	tool := mk("onnxruntime/lib", "libonnxruntime.so", 100, 365*24*time.Hour)

	out, err := runCLI(t, "cache", "list", "--cache", root)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"export", "sae", "checkpoint", "leftover", "5.0 kB", "5 entries"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "onnxruntime") {
		t.Errorf("list shows the runtime library:\n%s", out)
	}
	if _, err := runCLI(t, "cache", "prune", "--cache", root, "--older-than", "720h"); err != nil {
		t.Fatal(err)
	}
	for p, kept := range map[string]bool{oldExport: false, ck: false, left: false, newExport: true, sae: true, tool: true} {
		_, err := os.Stat(p)
		if kept != (err == nil) {
			t.Errorf("%s: kept %v, want %v", p, err == nil, kept)
		}
	}
	if _, err := runCLI(t, "cache", "prune", "--cache", root, "--older-than", "-1h"); err == nil {
		t.Error("a negative age was accepted")
	}
}
