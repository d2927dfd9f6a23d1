package analysis

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// Errors callers branch on.
var (
	// ErrMissingPoint: the model lacks a hook point an analysis needs.
	ErrMissingPoint = errors.New("model lacks a hook point this analysis needs")
	// ErrLayer: a layer out of range.
	ErrLayer = errors.New("layer out of range")
	// ErrTokenLength: clean and corrupted prompts of different lengths.
	ErrTokenLength = errors.New("clean and corrupted prompts have different token lengths")
	// ErrNoHeadAxis: a per-head patch on a point without a head axis.
	ErrNoHeadAxis = errors.New("point has no head axis")
	// ErrUndefined: normalisation is undefined (clean equals corrupted).
	ErrUndefined = errors.New("normalised score undefined: the clean and corrupted runs give the same metric")
	// ErrToken: a token id out of the vocabulary, or text that is not one token.
	ErrToken = errors.New("bad token")
	// ErrDecomposition: the components do not add up to the residual stream
	// (the model computes something this decomposition leaves out).
	ErrDecomposition = errors.New("components do not add up to the residual stream")
)

// Model is a Transformer with the weights the analyses read. It does not own
// the Transformer: Close releases the weights only.
type Model struct {
	T  *modelctx.Transformer
	mc *modelctx.ONNXModelContext

	mu      sync.Mutex
	weights map[string]*hooks.Tensor // by location and layer, read once
	bias    [][]float32              // attention output bias per layer, probed once
}

// New prepares analyses over an open model.
func New(t *modelctx.Transformer) (*Model, error) {
	mc, err := t.ModelContext()
	if err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	return &Model{T: t, mc: mc, weights: map[string]*hooks.Tensor{}}, nil
}

// Close releases the weights file (the Transformer stays open).
func (m *Model) Close() error { return m.mc.Close() }

// weight reads a weight once and keeps it.
func (m *Model) weight(loc modelctx.WeightLocationType, layer int) (*hooks.Tensor, error) {
	key := fmt.Sprintf("%s@%d", loc, layer)
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.weights[key]; ok {
		return w, nil
	}
	w, err := m.mc.Weight(loc, layer)
	if err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	m.weights[key] = w
	return w, nil
}

// optionalWeight is weight that reports a weight the model does not have as
// nil with no error.
func (m *Model) optionalWeight(loc modelctx.WeightLocationType, layer int) (*hooks.Tensor, error) {
	w, err := m.weight(loc, layer)
	if errors.Is(err, modelctx.ErrNoWeight) {
		return nil, nil
	}
	return w, err
}

// need checks that the model has every site listed.
func (m *Model) need(sites ...hooks.Site) error {
	for _, s := range sites {
		if !m.T.HasSite(s) {
			return fmt.Errorf("%w: %s (model %s)", ErrMissingPoint, s, m.T.Manifest().Name)
		}
	}
	return nil
}

// centred reports whether the final norm subtracts the mean (LayerNorm)
// rather than only scaling (RMSNorm): decided by the points the model has.
func (m *Model) centred() bool {
	return m.T.HasSite(hooks.Site{Point: hooks.LnFPostMeanSubtraction, Layer: -1})
}

// unembedColumn returns W_U[:, id] as float64 ([D]).
func (m *Model) unembedColumn(id int) ([]float64, error) {
	wu, err := m.weight(modelctx.WeightUnembedding, modelctx.NoLayer)
	if err != nil {
		return nil, err
	}
	D, V := wu.Shape[0], wu.Shape[1]
	if id < 0 || id >= V {
		return nil, fmt.Errorf("%w: id %d, the vocabulary is [0,%d)", ErrToken, id, V)
	}
	col := make([]float64, D)
	for d := range col {
		col[d] = float64(wu.Data[d*V+id])
	}
	return col, nil
}

// AttnBias returns the bias the attention output projection of each layer
// adds ([L][D]). It is read off the model itself, whatever its
// architecture: one pass over a single token with every head's output
// (attn.v_out) set to zero leaves exactly the bias in resid.torso.delta_attn.
func (m *Model) AttnBias(ctx context.Context) ([][]float32, error) {
	m.mu.Lock()
	known := m.bias
	m.mu.Unlock()
	if known != nil {
		return known, nil
	}
	L := m.T.NLayers()
	for l := 0; l < L; l++ {
		if err := m.need(hooks.Site{Point: hooks.AttnVOut, Layer: l}, hooks.Site{Point: hooks.DeltaAttn, Layer: l}); err != nil {
			return nil, err
		}
	}
	zero := hooks.New()
	zero.Add(hooks.AttnVOut, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		clear(x.Data)
		return x, nil
	})
	out, err := m.T.Forward(ctx, [][]int{{0}}, modelctx.WithHooks(zero),
		modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{hooks.DeltaAttn}}))
	if err != nil {
		return nil, fmt.Errorf("attention bias: %w", err)
	}
	bias := make([][]float32, L)
	for l := range bias {
		bias[l] = out.Activations[hooks.Site{Point: hooks.DeltaAttn, Layer: l}].Data
	}
	m.mu.Lock()
	m.bias = bias
	m.mu.Unlock()
	return bias, nil
}

// checkLayers validates layers against the model.
func (m *Model) checkLayers(layers []int) error {
	for _, l := range layers {
		if l < 0 || l >= m.T.NLayers() {
			return fmt.Errorf("%w: layer %d, the model has layers [0,%d)", ErrLayer, l, m.T.NLayers())
		}
	}
	return nil
}
