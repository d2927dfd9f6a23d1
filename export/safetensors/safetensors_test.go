package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func writeFile(t *testing.T, dir, name string, tensors []Tensor) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTripDTypes(t *testing.T) {
	dir := t.TempDir()
	half := Tensor{Name: "h", DType: "F16", Shape: []int{3}, Data: []byte{0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00}} // 1, -2, smallest subnormal
	bf := Tensor{Name: "b", DType: "BF16", Shape: []int{2}, Data: []byte{0x80, 0x3f, 0x40, 0xc0}}              // 1, -3
	p := writeFile(t, dir, "x.safetensors", []Tensor{F32("w", []int{2, 2}, []float32{1, 2, 3, 4}), half, bf})
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	cases := []struct {
		name  string
		want  []float32
		shape []int
	}{
		{"w", []float32{1, 2, 3, 4}, []int{2, 2}},
		{"h", []float32{1, -2, float32(math.Ldexp(1, -24))}, []int{3}},
		{"b", []float32{1, -3}, []int{2}},
	}
	for _, c := range cases {
		got, shape, err := f.Float32(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(shape) != len(c.shape) || shape[0] != c.shape[0] {
			t.Errorf("%s shape %v want %v", c.name, shape, c.shape)
		}
		for i := range c.want {
			if got[i] != c.want[i] {
				t.Errorf("%s[%d] = %v want %v", c.name, i, got[i], c.want[i])
			}
		}
	}
	if _, _, err := f.Float32("nope"); !errors.Is(err, ErrNoTensor) {
		t.Errorf("missing tensor: %v", err)
	}
}

func header(js string, data int) []byte {
	b := make([]byte, 8, 8+len(js)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(js)))
	b = append(b, js...)
	return append(b, make([]byte, data)...)
}

func TestLyingHeadersRefused(t *testing.T) {
	cases := map[string][]byte{
		"offset past the end":  header(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8),
		"shape disagrees":      header(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}`, 16),
		"overlap":              header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 16),
		"negative dim":         header(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, 0),
		"overflowing shape":    header(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}`, 0),
		"unknown dtype":        header(`{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}`, 1),
		"reversed offsets":     header(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}}`, 8),
		"not json":             header(`{"a":`, 0),
		"header longer":        append(binary.LittleEndian.AppendUint64(nil, 1<<40), '{', '}'),
		"too short":            {1, 2, 3},
		"metadata not strings": header(`{"__metadata__":{"a":1}}`, 0),
	}
	dir := t.TempDir()
	for name, b := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, b, 0o644)
		if f, err := Open(p); !errors.Is(err, ErrFormat) {
			if f != nil {
				f.Close()
			}
			t.Errorf("%s: err %v, want ErrFormat", name, err)
		}
	}
}

func TestShardedDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "model-00001-of-00002.safetensors", []Tensor{F32("a", []int{1}, []float32{1})})
	writeFile(t, dir, "model-00002-of-00002.safetensors", []Tensor{F32("b", []int{1}, []float32{2})})
	os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`), 0o644)
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Names(); len(got) != 2 || !s.Has("b") {
		t.Fatalf("names %v", got)
	}
	v, _, err := s.Float32("b")
	if err != nil || v[0] != 2 {
		t.Fatalf("b = %v, %v", v, err)
	}
	os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"weight_map":{"a":"../x.safetensors"}}`), 0o644)
	if _, err := OpenDir(dir); !errors.Is(err, ErrFormat) {
		t.Errorf("escaping shard: %v", err)
	}
}

func TestReadsGoldenHFFolder(t *testing.T) {
	dir := filepath.Join(golden.RequireShared(t, "hf"), "gpt2")
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, ok := s.Info("transformer.h.0.attn.c_attn.weight")
	if !ok || info.DType != "F32" || info.Shape[0] != 64 || info.Shape[1] != 192 {
		t.Fatalf("c_attn: %+v %v", info, ok)
	}
	if len(s.Names()) != 29 {
		t.Errorf("%d tensors, want 29", len(s.Names()))
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), int64(8))
	f.Add([]byte(`{"__metadata__":{"k":"v"},"b":{"dtype":"BF16","shape":[1,1],"data_offsets":[0,2]}}`), int64(2))
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[0],"data_offsets":[4,4]}}`), int64(4))
	f.Fuzz(func(t *testing.T, js []byte, dataLen int64) {
		h, err := ParseHeader(js, dataLen)
		if err != nil {
			return
		}
		for _, name := range h.Names() {
			in := h.Tensors[name]
			if in.Begin < 0 || in.End > dataLen || in.End < in.Begin {
				t.Fatalf("accepted %+v with %d data bytes", in, dataLen)
			}
		}
	})
}
