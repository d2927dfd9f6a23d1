package analysis

import (
	"context"
	"fmt"
	"slices"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// Per says what one patched run replaces.
type Per int

// What a patched run replaces.
const (
	PerPosition Per = iota // [:, p] of the point: every channel (and head) at one position
	PerHead                // one head at every position (points with a head axis)
	PerLayer               // the whole tensor
)

// ParsePer parses "position", "head" or "layer".
func ParsePer(s string) (Per, error) {
	switch s {
	case "", "position":
		return PerPosition, nil
	case "head":
		return PerHead, nil
	case "layer":
		return PerLayer, nil
	}
	return 0, fmt.Errorf("per %q: want position, head or layer", s)
}

func (p Per) String() string {
	switch p {
	case PerPosition:
		return "position"
	case PerHead:
		return "head"
	case PerLayer:
		return "layer"
	}
	return fmt.Sprintf("Per(%d)", int(p))
}

// DefaultMaxBatch is the number of patched runs one forward pass holds
// when PatchSpec.MaxBatch is 0.
const DefaultMaxBatch = 16

// PatchSpec describes an activation-patching sweep.
type PatchSpec struct {
	Clean, Corrupted []int // token ids of one prompt each, of the same length
	Point            hooks.Point
	// Layers to sweep for a per-layer point (nil: every layer); a once
	// point has a single row.
	Layers   []int
	Per      Per
	Metric   Metric
	MaxBatch int // patched runs per forward pass (0: DefaultMaxBatch)
	// FullPasses runs every patched pass from the embedding. By default a
	// batch whose patches all lie at layer l or later starts at layer l
	// from the corrupted run's residual stream (StartAtLayer), which gives
	// the same values up to float round-off at a fraction of the cost.
	FullPasses bool
}

// PatchResult is a layer x position (or head) table of metric values.
type PatchResult struct {
	Point  hooks.Point
	Per    Per
	Metric MetricKind
	Layers []int // the table's rows (-1 for a once point)
	Cols   int   // positions, heads, or 1 (per layer)
	// Raw is the metric of each patched run, Normalized the same as
	// (raw - corrupted) / (clean - corrupted); both [len(Layers)][Cols].
	Raw, Normalized  [][]float64
	Clean, Corrupted float64 // the metric of the unpatched runs
}

// patchCell is one patched run: a layer (-1 for a once point) and a
// position or head.
type patchCell struct{ layer, col int }

// Patch runs the clean prompt once, capturing the point, then the
// corrupted prompt once per cell of the table with that cell's slice
// replaced by the clean value, and reads the metric at the last position.
// Many patched runs share one forward pass (rows of the batch are
// different patches), so a sweep costs a handful of passes.
func (m *Model) Patch(ctx context.Context, spec PatchSpec) (*PatchResult, error) {
	layers, err := m.patchLayers(spec)
	if err != nil {
		return nil, err
	}
	clean, cleanMetric, err := m.cleanRun(ctx, spec, layers)
	if err != nil {
		return nil, err
	}
	cols, err := patchCols(spec, clean[layers[0]])
	if err != nil {
		return nil, err
	}
	corrupted, err := m.corruptedRun(ctx, spec)
	if err != nil {
		return nil, err
	}
	if _, err := Normalize(corrupted.metric, cleanMetric, corrupted.metric); err != nil {
		return nil, err
	}
	var cells []patchCell
	for _, l := range layers {
		for c := 0; c < cols; c++ {
			cells = append(cells, patchCell{l, c})
		}
	}
	values, err := m.patchedRuns(ctx, spec, layers, clean, corrupted, cells)
	if err != nil {
		return nil, err
	}
	res := &PatchResult{Point: spec.Point, Per: spec.Per, Metric: spec.Metric.Kind, Layers: layers, Cols: cols,
		Clean: cleanMetric, Corrupted: corrupted.metric}
	for i := range layers {
		raw := values[i*cols : (i+1)*cols]
		norm := make([]float64, cols)
		for c, v := range raw {
			norm[c], _ = Normalize(v, res.Clean, res.Corrupted)
		}
		res.Raw = append(res.Raw, raw)
		res.Normalized = append(res.Normalized, norm)
	}
	return res, nil
}

// patchLayers checks the spec and returns the layers to sweep ([-1] for a
// once point).
func (m *Model) patchLayers(spec PatchSpec) ([]int, error) {
	if len(spec.Clean) == 0 || len(spec.Corrupted) == 0 {
		return nil, fmt.Errorf("patch: %w", modelctx.ErrEmptyBatch)
	}
	if len(spec.Clean) != len(spec.Corrupted) {
		return nil, fmt.Errorf("%w: clean has %d tokens, corrupted %d", ErrTokenLength, len(spec.Clean), len(spec.Corrupted))
	}
	if err := spec.Metric.check(m.T.Manifest().Config.NVocab); err != nil {
		return nil, err
	}
	if !spec.Point.Valid() || spec.Point == hooks.LogitsPoint || spec.Point.IsSAE() {
		return nil, fmt.Errorf("%w: cannot patch %s", ErrMissingPoint, spec.Point)
	}
	if spec.Per == PerHead && !slices.Contains(spec.Point.Shape(), hooks.Heads) {
		return nil, fmt.Errorf("%w: %s is %v; --per head needs a heads axis", ErrNoHeadAxis, spec.Point, spec.Point.Shape())
	}
	layers := []int{-1}
	if spec.Point.PerLayer() {
		layers = spec.Layers
		if layers == nil {
			layers = make([]int, m.T.NLayers())
			for l := range layers {
				layers[l] = l
			}
		}
		if len(layers) == 0 {
			return nil, fmt.Errorf("%w: no layers to patch", ErrLayer)
		}
		if err := m.checkLayers(layers); err != nil {
			return nil, err
		}
	}
	for _, l := range layers {
		if err := m.need(hooks.Site{Point: spec.Point, Layer: l}); err != nil {
			return nil, err
		}
	}
	return layers, nil
}

// cleanRun runs the clean prompt, capturing the point at the layers.
func (m *Model) cleanRun(ctx context.Context, spec PatchSpec, layers []int) (map[int]*hooks.Tensor, float64, error) {
	f := &modelctx.Filter{Points: []hooks.Point{spec.Point}}
	if spec.Point.PerLayer() {
		f.Layers = layers
	}
	out, err := m.T.Forward(ctx, [][]int{spec.Clean}, modelctx.Capture(f))
	if err != nil {
		return nil, 0, fmt.Errorf("patch: clean run: %w", err)
	}
	acts := map[int]*hooks.Tensor{}
	for _, l := range layers {
		acts[l] = out.Activations[hooks.Site{Point: spec.Point, Layer: l}]
	}
	return acts, spec.Metric.Of(lastRow(out.Logits, 0)), nil
}

// patchCols is the number of table columns: positions along axis 1 (the
// query or key axis), heads, or 1.
func patchCols(spec PatchSpec, clean *hooks.Tensor) (int, error) {
	switch spec.Per {
	case PerPosition:
		return clean.Shape[1], nil
	case PerHead:
		return clean.Shape[slices.Index(spec.Point.Shape(), hooks.Heads)], nil
	}
	return 1, nil
}

// patchedRuns runs the cells in batches of corrupted rows and returns the
// metric of each.
func (m *Model) patchedRuns(ctx context.Context, spec PatchSpec, layers []int, clean map[int]*hooks.Tensor, corr *corruptedRun, cells []patchCell) ([]float64, error) {
	maxB := spec.MaxBatch
	if maxB <= 0 {
		maxB = DefaultMaxBatch
	}
	values := make([]float64, 0, len(cells))
	for lo := 0; lo < len(cells); lo += maxB {
		chunk := cells[lo:min(lo+maxB, len(cells))]
		rows := make([][]int, len(chunk))
		for i := range rows {
			rows[i] = spec.Corrupted
		}
		h := hooks.New()
		for _, l := range layers {
			opts := []hooks.Option{}
			if l >= 0 {
				opts = append(opts, hooks.AtLayers(l))
			}
			h.Add(spec.Point, patcher(spec, chunk, l, clean[l]), opts...)
		}
		last, err := m.lastLogits(ctx, spec, rows, h, m.chunkStart(spec, chunk), corr)
		if err != nil {
			return nil, fmt.Errorf("patch: corrupted runs: %w", err)
		}
		V := len(last) / len(chunk)
		for r := range chunk {
			values = append(values, spec.Metric.Of(last[r*V:(r+1)*V]))
		}
	}
	return values, nil
}

// patcher returns the hook that writes, in each row of the batch patched at
// this layer, that row's slice of the clean value.
func patcher(spec PatchSpec, chunk []patchCell, layer int, clean *hooks.Tensor) hooks.Func {
	return func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		if !slices.Equal(x.Shape[1:], clean.Shape[1:]) {
			return nil, fmt.Errorf("patch: %s is %v in the corrupted run, %v in the clean run", spec.Point, x.Shape, clean.Shape)
		}
		n := clean.Numel()
		for r, c := range chunk {
			if c.layer != layer {
				continue
			}
			copySlice(x.Data[r*n:(r+1)*n], clean.Data, clean.Shape, spec, c.col)
		}
		return x, nil
	}
}

// copySlice copies the cell's slice of one row (shape [1, ...]) from src to
// dst.
func copySlice(dst, src []float32, shape []int, spec PatchSpec, col int) {
	switch spec.Per {
	case PerLayer:
		copy(dst, src)
	case PerPosition:
		stride := len(src) / shape[1]
		copy(dst[col*stride:(col+1)*stride], src[col*stride:(col+1)*stride])
	case PerHead:
		ax := slices.Index(spec.Point.Shape(), hooks.Heads)
		inner := 1
		for _, d := range shape[ax+1:] {
			inner *= d
		}
		H := shape[ax]
		for o := 0; o < len(src)/(H*inner); o++ {
			off := (o*H + col) * inner
			copy(dst[off:off+inner], src[off:off+inner])
		}
	}
}

// lastRow is logits[r, T-1, :].
func lastRow(logits *hooks.Tensor, r int) []float32 {
	T, V := logits.Shape[1], logits.Shape[2]
	off := (r*T + T - 1) * V
	return logits.Data[off : off+V]
}
