package sae

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/internal/fileio"

	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
	"github.com/onnx-tdb/onnx-tdb/internal/weightsfile"
	"google.golang.org/protobuf/proto"
)

// A converted SAE is a folder: sae.json (this manifest), sae.onnx (the graph
// of buildGraph) and weights.bin (every tensor at a page-aligned offset, so
// ONNX Runtime maps the file and a session reads only the pages it needs).
const (
	folderFormat = "onnx-tdb-sae/1"
	manifestName = "sae.json"
	graphName    = "sae.onnx"
	weightsName  = "weights.bin"
)

type folderManifest struct {
	Format     string     `json:"format"`
	Source     string     `json:"source,omitempty"`
	NInputs    int        `json:"n_inputs"`
	NLatents   int        `json:"n_latents"`
	Activation Activation `json:"activation"`
	// Family and what follows are absent for TDB's own SAEs.
	Family      string               `json:"family,omitempty"`
	NOutputs    int                  `json:"n_outputs,omitempty"`     // transcoders' d_out; 0: NInputs
	NoInputBias bool                 `json:"no_input_bias,omitempty"` // pre_bias is not subtracted from the input
	Norm        string               `json:"normalize,omitempty"`     // constant_norm_rescale or layer_norm; "" none
	Dead        *int                 `json:"dead_latents,omitempty"`  // from sparsity.safetensors
	Site        *SiteSpec            `json:"site,omitempty"`
	Graph       string               `json:"graph"`
	Weights     string               `json:"weights"`
	Tensors     map[string]weightRef `json:"tensors"`
}

func readManifest(dir string) (*folderManifest, error) {
	b, err := fileio.ReadLimited(filepath.Join(dir, manifestName), maxManifestBytes)
	if errors.Is(err, fileio.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrNotConverted, err)
	}
	if err != nil {
		return nil, err
	}
	var m folderManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, manifestName), err)
	}
	if m.Format != folderFormat {
		return nil, fmt.Errorf("%w: %s has format %q, this build reads %q", ErrNotConverted, dir, m.Format, folderFormat)
	}
	if err := m.Activation.validate(m.NLatents); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if err := m.check(dir); err != nil {
		return nil, err
	}
	return &m, nil
}

// isConverted reports whether dir holds a converted SAE of this format.
func isConverted(dir string) bool {
	_, err := readManifest(dir)
	return err == nil
}

// weightWriter appends tensors to weights.bin and records where each went.
type weightWriter struct {
	w    *weightsfile.Writer
	refs map[string]weightRef
}

func newWeightWriter(path string) (*weightWriter, error) {
	w, err := weightsfile.Create(path)
	if err != nil {
		return nil, err
	}
	return &weightWriter{w: w, refs: map[string]weightRef{}}, nil
}

// put writes one tensor: fill writes its bytes, which must be exactly
// numel(dims) elements of dtype.
func (ww *weightWriter) put(name, dtype string, dims []int64, fill func(w io.Writer) error) error {
	want := int64(4)
	if dtype == "int64" {
		want = 8
	}
	for _, d := range dims {
		want *= d
	}
	off, err := ww.w.Append(want, fill)
	if err != nil {
		return fmt.Errorf("write %s (dims %v): %w", name, dims, err)
	}
	ww.refs[name] = weightRef{Dims: dims, DType: dtype, Offset: off, Length: want}
	return nil
}

func (ww *weightWriter) putF32(name string, dims []int64, v []float32) error {
	return ww.put(name, "float32", dims, func(w io.Writer) error {
		_, err := w.Write(weightsfile.Bytes(v))
		return err
	})
}

func (ww *weightWriter) putI64(name string, dims []int64, v []int64) error {
	return ww.put(name, "int64", dims, func(w io.Writer) error {
		_, err := w.Write(weightsfile.Bytes(v))
		return err
	})
}

func (ww *weightWriter) close() error { return ww.w.Close() }

// writeParams writes a converted folder's weights from Go memory.
func writeParams(ww *weightWriter, p *params) error {
	N, n := int64(p.nLatents), int64(p.nInputs)
	for _, t := range []struct {
		key  string
		dims []int64
		v    []float32
	}{
		{keyPreBias, []int64{n}, p.preBias},
		{keyEncoder, []int64{N, n}, p.encoder},
		{keyLatentBias, []int64{N}, p.latentBias},
		{keyDecoder, []int64{n, N}, p.decoder},
		{keyFrequency, []int64{N}, p.frequency},
		{keyMeanSquare, []int64{N}, p.meanSquare},
	} {
		if err := ww.putF32(t.key, t.dims, t.v); err != nil {
			return err
		}
	}
	return ww.putI64(keyLastNZ, []int64{N}, p.lastNonzero)
}

// writeFolder makes a converted folder at out, atomically: it is filled
// under a temporary name beside out and renamed when complete. fill writes
// the weights; the graph and manifest are written from what it wrote. When
// another writer completed out first, its folder is kept; a stale folder
// (older format, half-removed) is replaced.
func writeFolder(out string, m folderManifest, fill func(ww *weightWriter) error) error {
	return atomicdir.Write(out, func(tmp string) error {
		ww, err := newWeightWriter(filepath.Join(tmp, weightsName))
		if err != nil {
			return err
		}
		if err := fill(ww); err != nil {
			ww.close()
			return err
		}
		if err := ww.close(); err != nil {
			return fmt.Errorf("write weights: %w", err)
		}
		m.Format, m.Graph, m.Tensors = folderFormat, graphName, ww.refs
		m.Weights = weightsName
		g, err := buildGraph(&m)
		if err != nil {
			return err
		}
		gb, err := proto.Marshal(g)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, graphName), gb, 0o644); err != nil {
			return err
		}
		mb, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, manifestName), append(mb, '\n'), 0o644)
	}, func(out string) atomicdir.Exists {
		if isConverted(out) {
			return atomicdir.Keep
		}
		return atomicdir.Replace
	})
}

// readF32 reads a float32 tensor of a converted folder into Go memory.
func readF32(dir string, ref weightRef) ([]float32, error) {
	if ref.DType != "float32" {
		return nil, fmt.Errorf("tensor is %s, not float32", ref.DType)
	}
	v := make([]float32, ref.Length/4)
	if err := readAt(dir, ref, weightsfile.Bytes(v)); err != nil {
		return nil, err
	}
	return v, nil
}

func readAt(dir string, ref weightRef, dst []byte) error {
	f, err := os.Open(filepath.Join(dir, weightsName))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.ReadAt(dst, ref.Offset); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s is truncated", ErrNotConverted, filepath.Join(dir, weightsName))
		}
		return err
	}
	return nil
}
