package torchpt

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/hostile"
)

// TestHostileFilesRefused: each small file that asks for gigabytes is refused
// by both loaders, allocating less than hostile.MaxAlloc in all.
func TestHostileFilesRefused(t *testing.T) {
	dir := t.TempDir()
	for _, f := range hostile.PT() {
		t.Run(f.Name, func(t *testing.T) {
			path := filepath.Join(dir, f.Name)
			if err := os.WriteFile(path, f.Bytes, 0o644); err != nil {
				t.Fatal(err)
			}
			for name, load := range map[string]func(string) error{
				"LoadTensor":      func(p string) error { _, err := LoadTensor(p); return err },
				"LoadStateDict":   func(p string) error { _, err := LoadStateDict(p); return err },
				"LoadTensorShape": func(p string) error { _, err := LoadTensorShape(p, []int{32768, 32768}); return err },
			} {
				var err error
				alloc := hostile.Allocated(func() { err = load(path) })
				if err == nil {
					t.Fatalf("%s accepted %s (%s)", name, f.Name, f.Why)
				}
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
					t.Errorf("%s: error wraps neither sentinel: %v", name, err)
				}
				if alloc > hostile.MaxAlloc {
					t.Errorf("%s allocated %d MB refusing %s", name, alloc>>20, f.Name)
				}
			}
		})
	}
}

// TestHostileFileSizes: the files are as small as the ones reported.
func TestHostileFileSizes(t *testing.T) {
	limit := map[string]int{"stride0_f32.pt": 394, "stride0_i64.pt": 398, "none_ops.pt": 50 << 10,
		"deflated_pkl.pt": 1100 << 10, "deflated_storage.pt": 1100 << 10, "many_views.pt": 1700 << 10}
	for _, f := range hostile.PT() {
		if len(f.Bytes) > limit[f.Name] {
			t.Errorf("%s is %d bytes, want at most %d", f.Name, len(f.Bytes), limit[f.Name])
		}
	}
}

// TestLoadTensorShapeRefusesOtherShape: a piece of the wrong shape fails with
// ErrShape before its data is read.
func TestLoadTensorShapeRefusesOtherShape(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.pt")
	if err := os.WriteFile(path, hostile.StrideZero(false), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	alloc := hostile.Allocated(func() { _, err = LoadTensorShape(path, []int{768}) })
	if !errors.Is(err, ErrShape) {
		t.Fatalf("err = %v, want ErrShape", err)
	}
	if alloc > 1<<20 {
		t.Errorf("allocated %d bytes", alloc)
	}
	good := filepath.Join(t.TempDir(), "g.pt")
	if err := Save(good, &Tensor{DType: "float32", Shape: []int{2, 3}, F32: make([]float32, 6)}); err != nil {
		t.Fatal(err)
	}
	if tn, err := LoadTensorShape(good, []int{2, 3}); err != nil || tn.Numel() != 6 {
		t.Fatalf("%v %v", tn, err)
	}
	if _, err := LoadTensorShape(good, []int{3, 2}); !errors.Is(err, ErrShape) {
		t.Fatalf("err = %v, want ErrShape", err)
	}
}

// TestPickleStackBound: a stack of more than maxPickleStack NONEs is refused
// while scanning, before the unpickler holds any of it.
func TestPickleStackBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.pt")
	if err := os.WriteFile(path, hostile.NoneOps(maxPickleStack+(1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadTensor(path)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v", err)
	}
	if msg := err.Error(); !contains(msg, "stack") {
		t.Errorf("error %q does not say the stack is too deep", msg)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
