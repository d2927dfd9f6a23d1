package analysis

import (
	"context"
	"fmt"
	"math"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// LensOptions configures the logit lens.
type LensOptions struct {
	K         int // top tokens per layer and position (0: 5)
	Target    int // token whose logit, probability and rank are reported
	HasTarget bool
	MaxBatch  int // residual rows per pass of the model's head (0: DefaultMaxBatch)
}

// LensResult is the logit lens of one prompt: row 0 is the residual stream
// after the embedding, row l+1 after layer l; the last row is the model's
// own logits.
type LensResult struct {
	Labels    []string      // the residual site of each row
	TopIDs    [][][]int     // [L+1][T][k], largest logit first
	TopLogits [][][]float32 // [L+1][T][k]
	TopProbs  [][][]float64 // [L+1][T][k]: softmax over the vocabulary
	// The target's logit, probability (softmax over the vocabulary) and
	// rank (how many tokens have a larger logit), [L+1][T]; nil without a
	// target.
	TargetLogit [][]float64
	TargetProb  [][]float64
	TargetRank  [][]int
}

// Lens runs the logit lens over one prompt.
func (m *Model) Lens(ctx context.Context, tokens []int, opt LensOptions) (*LensResult, error) {
	c, err := m.Run(ctx, [][]int{tokens})
	if err != nil {
		return nil, err
	}
	return c.Lens(ctx, 0, opt)
}

// Lens puts the residual stream of batch row b after the embedding and
// after each layer through the model's own final norm (each row and
// position with its own scale) and unembedding. It runs those two stages
// only (StartAtLayer(NLayers)), on many residuals per pass; the last row
// is the captured logits, so it equals the model's output exactly.
func (c *Cache) Lens(ctx context.Context, b int, opt LensOptions) (*LensResult, error) {
	if opt.K <= 0 {
		opt.K = 5
	}
	V := c.Logits.Shape[2]
	if opt.HasTarget && (opt.Target < 0 || opt.Target >= V) {
		return nil, fmt.Errorf("%w: id %d, the vocabulary is [0,%d)", ErrToken, opt.Target, V)
	}
	if b < 0 || b >= len(c.Tokens) {
		return nil, fmt.Errorf("lens: batch row %d of %d", b, len(c.Tokens))
	}
	labels, err := c.ResidLabels()
	if err != nil {
		return nil, err
	}
	acc, err := c.AccumulatedResid() // [L+1,B,T,D]
	if err != nil {
		return nil, err
	}
	L, B, T, D := acc.Shape[0]-1, acc.Shape[1], acc.Shape[2], acc.Shape[3]
	res := &LensResult{Labels: labels}
	add := func(lg []float32) { res.add(lg, T, V, opt) }
	maxB := opt.MaxBatch
	if maxB <= 0 {
		maxB = DefaultMaxBatch
	}
	for lo := 0; lo < L; lo += maxB {
		n := min(maxB, L-lo)
		resid := hooks.Zeros(n, T, D)
		rows := make([][]int, n)
		for i := 0; i < n; i++ {
			off := ((lo+i)*B + b) * T * D
			copy(resid.Data[i*T*D:(i+1)*T*D], acc.Data[off:off+T*D])
			rows[i] = c.Tokens[b]
		}
		out, err := c.m.T.Forward(ctx, rows, modelctx.StartAtLayer(L, resid))
		if err != nil {
			return nil, fmt.Errorf("lens: %w", err)
		}
		for i := 0; i < n; i++ {
			add(out.Logits.Data[i*T*V : (i+1)*T*V])
		}
	}
	add(c.Logits.Data[b*T*V : (b+1)*T*V])
	return res, nil
}

// add appends one lens row from its logits [T,V].
func (r *LensResult) add(lg []float32, T, V int, opt LensOptions) {
	ids := make([][]int, T)
	top := make([][]float32, T)
	probs := make([][]float64, T)
	var tl, tp []float64
	var rk []int
	for t := 0; t < T; t++ {
		row := lg[t*V : (t+1)*V]
		ids[t] = modelctx.TopK(row, opt.K)
		for _, id := range ids[t] {
			top[t] = append(top[t], row[id])
		}
		probs[t] = topProbs(row, ids[t])
		if opt.HasTarget {
			tl = append(tl, float64(row[opt.Target]))
			tp = append(tp, softmaxAt(row, opt.Target))
			rk = append(rk, Rank(row, opt.Target))
		}
	}
	r.TopIDs = append(r.TopIDs, ids)
	r.TopLogits = append(r.TopLogits, top)
	r.TopProbs = append(r.TopProbs, probs)
	if opt.HasTarget {
		r.TargetLogit = append(r.TargetLogit, tl)
		r.TargetProb = append(r.TargetProb, tp)
		r.TargetRank = append(r.TargetRank, rk)
	}
}

// Rank is the number of entries larger than v[i] (0: the largest).
func Rank(v []float32, i int) int {
	n := 0
	for _, x := range v {
		if x > v[i] || (math.IsNaN(float64(v[i])) && !math.IsNaN(float64(x))) {
			n++
		}
	}
	return n
}
