package torchpt

import (
	"archive/zip"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSaveThenLoadTensor(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	negZero := float32(math.Copysign(0, -1))
	cases := map[string]*Tensor{
		"matrix":    {Shape: []int{2, 3}, F32: []float32{1, -2, 3.5, inf, -inf, nan}},
		"scalar":    {DType: "float32", Shape: []int{}, F32: []float32{negZero}},
		"empty":     {DType: "float32", Shape: []int{3, 0}, F32: []float32{}},
		"int64":     {DType: "int64", Shape: []int{4}, I64: []int64{math.MinInt64, -1, 1 << 40, math.MaxInt64}},
		"int64 4d":  {Shape: []int{1, 2, 1, 2}, I64: []int64{5, 6, 7, 8}},
		"subnormal": {Shape: []int{2}, F32: []float32{math.SmallestNonzeroFloat32, math.MaxFloat32}},
	}
	dir := t.TempDir()
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "t.pt")
			if err := Save(path, in); err != nil {
				t.Fatal(err)
			}
			got, err := LoadTensor(path)
			if err != nil {
				t.Fatal(err)
			}
			wantDType := in.DType
			if wantDType == "" {
				wantDType = "float32"
				if in.I64 != nil {
					wantDType = "int64"
				}
			}
			if got.DType != wantDType || !reflect.DeepEqual(got.Shape, in.Shape) && !(len(got.Shape) == 0 && len(in.Shape) == 0) {
				t.Fatalf("dtype %s shape %v, want %s %v", got.DType, got.Shape, wantDType, in.Shape)
			}
			if in.I64 != nil {
				if !reflect.DeepEqual(got.I64, in.I64) {
					t.Fatalf("got %v, want %v", got.I64, in.I64)
				}
			} else if !sameBits(got.F32, in.F32) {
				t.Fatalf("got %v, want %v", got.F32, in.F32)
			}
		})
	}
}

// The archive is laid out as torch writes it: records under archive/, stored
// uncompressed, each record's data aligned to 64 bytes.
func TestSaveArchiveLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pt")
	if err := Save(path, &Tensor{Shape: []int{3}, F32: []float32{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		off, err := f.DataOffset()
		if err != nil {
			t.Fatal(err)
		}
		if f.Method != zip.Store || off%64 != 0 {
			t.Errorf("%s: method %d, data at %d", f.Name, f.Method, off)
		}
	}
	want := []string{"archive/data.pkl", "archive/byteorder", "archive/data/0", "archive/version"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("records %v, want %v", names, want)
	}
}

func TestSaveStateDictThenLoad(t *testing.T) {
	enc := &Tensor{Shape: []int{2, 2}, F32: []float32{1, 2, 3, 4}}
	stats := &Tensor{DType: "int64", Shape: []int{2}, I64: []int64{0, 7}}
	keys := []string{"encoder.weight", "activation", "stats_last_nonzero", "activation_state_dict", "misc"}
	values := map[string]any{
		"activation":            "TopK",
		"activation_state_dict": map[string]any{"k": 16, "postact_fn": "ReLU"},
		"misc": []any{nil, true, false, 1.25, int64(-1 << 40), int32(-3), []byte("raw"),
			map[string]any{"nested": &Tensor{Shape: []int{1}, F32: []float32{9}}}},
	}
	tensors := map[string]*Tensor{"encoder.weight": enc, "stats_last_nonzero": stats}
	path := filepath.Join(t.TempDir(), "sae.pt")
	if err := SaveStateDict(path, keys, tensors, values); err != nil {
		t.Fatal(err)
	}
	sd, err := LoadStateDict(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sd.Keys, keys) {
		t.Fatalf("keys %v, want %v", sd.Keys, keys)
	}
	enc.DType = "float32"
	if !reflect.DeepEqual(sd.Tensors["encoder.weight"], enc) || !reflect.DeepEqual(sd.Tensors["stats_last_nonzero"], stats) {
		t.Errorf("tensors %+v", sd.Tensors)
	}
	wantValues := map[string]any{
		"activation":            "TopK",
		"activation_state_dict": map[string]any{"k": int64(16), "postact_fn": "ReLU"},
		"misc": []any{nil, true, false, 1.25, int64(-1 << 40), int64(-3), []byte("raw"),
			map[string]any{"nested": &Tensor{DType: "float32", Shape: []int{1}, F32: []float32{9}}}},
	}
	if !reflect.DeepEqual(sd.Values, wantValues) {
		t.Errorf("values %#v\nwant %#v", sd.Values, wantValues)
	}
}

func TestSaveRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pt")
	cases := map[string]*Tensor{
		"length mismatch": {Shape: []int{2, 2}, F32: []float32{1, 2, 3}},
		"negative size":   {Shape: []int{-1}, F32: nil},
		"float16":         {DType: "float16", Shape: []int{1}, F32: []float32{1}},
		"both slices":     {Shape: []int{1}, F32: []float32{1}, I64: []int64{1}},
		"nil":             nil,
	}
	for name, in := range cases {
		if err := Save(path, in); err == nil {
			t.Errorf("%s: saved", name)
		}
	}
	if err := Save(path, cases["float16"]); !errors.Is(err, ErrUnsupported) {
		t.Errorf("float16: %v, want ErrUnsupported", err)
	}
	if err := SaveStateDict(path, []string{"a"}, nil, nil); err == nil {
		t.Error("a key with no value was saved")
	}
	if err := SaveStateDict(path, []string{"a"}, nil, map[string]any{"a": struct{}{}}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("struct value: %v, want ErrUnsupported", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed saves left %d files behind", len(ents))
	}
}

// Save replaces an existing file only once the new one is complete.
func TestSaveReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pt")
	if err := Save(path, &Tensor{Shape: []int{1}, F32: []float32{1}}); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, &Tensor{Shape: []int{2}, F32: []float32{2, 3}}); err != nil {
		t.Fatal(err)
	}
	got, err := LoadTensor(path)
	if err != nil || !reflect.DeepEqual(got.F32, []float32{2, 3}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the folder, want 1", len(ents))
	}
}
