package sae

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Bounds on what a converted folder's manifest may claim. The manifest is
// read before anything else, so each claim is checked against these and
// against the size of weights.bin before it decides any allocation or what
// ONNX Runtime maps.
const (
	maxManifestBytes = 1 << 20
	maxWidth         = 1 << 24 // n_inputs and n_latents
)

// check refuses a manifest whose files lie outside dir, whose sizes are
// out of range, or whose tensors do not lie inside weights.bin with the
// shapes the sizes fix. Errors wrap ErrNotConverted.
func (m *folderManifest) check(dir string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrNotConverted, filepath.Join(dir, manifestName), fmt.Sprintf(format, args...))
	}
	if m.Graph != graphName || m.Weights != weightsName {
		return bad("graph %q and weights %q: want %q and %q in the folder", m.Graph, m.Weights, graphName, weightsName)
	}
	n, N, out := int64(m.NInputs), int64(m.NLatents), int64(m.NOutputs)
	if out == 0 {
		out = n // an SAE reconstructs its input; a transcoder writes d_out values
	}
	if n <= 0 || n > maxWidth || N <= 0 || N > maxWidth || out <= 0 || out > maxWidth {
		return bad("n_inputs %d, n_latents %d and n_outputs %d must be in 1..%d", n, N, out, maxWidth)
	}
	st, err := os.Stat(filepath.Join(dir, weightsName))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotConverted, err)
	}
	size := st.Size()
	want := map[string]struct {
		dims     []int64
		dtype    string
		optional bool
	}{
		keyPreBias:    {[]int64{out}, "float32", false},
		keyEncoder:    {[]int64{N, n}, "float32", false},
		keyLatentBias: {[]int64{N}, "float32", false},
		keyDecoder:    {[]int64{out, N}, "float32", false},
		keyThreshold:  {[]int64{N}, "float32", true},
		keyMagEncoder: {[]int64{N, n}, "float32", true},
		keyMagBias:    {[]int64{N}, "float32", true},
		keySkip:       {[]int64{out, n}, "float32", true},
		keyFrequency:  {[]int64{N}, "float32", true},
		keyMeanSquare: {[]int64{N}, "float32", true},
		keyLastNZ:     {[]int64{N}, "int64", true},
	}
	for key, w := range want {
		ref, ok := m.Tensors[key]
		if !ok {
			if w.optional {
				continue
			}
			return bad("no tensor %s", key)
		}
		if ref.DType != w.dtype || !slices.Equal(ref.Dims, w.dims) {
			return bad("tensor %s is %s %v, want %s %v", key, ref.DType, ref.Dims, w.dtype, w.dims)
		}
		length := int64(4) // n, N <= 2^24: the product cannot overflow
		if w.dtype == "int64" {
			length = 8
		}
		for _, d := range w.dims {
			length *= d
		}
		if ref.Length != length || ref.Offset < 0 || ref.Offset > size || length > size-ref.Offset {
			return bad("tensor %s (%d bytes at %d) does not lie inside %s of %d bytes as %d bytes",
				key, ref.Length, ref.Offset, weightsName, size, length)
		}
	}
	for key := range m.Tensors {
		if _, ok := want[key]; !ok {
			return bad("unknown tensor %s", key)
		}
	}
	return nil
}
