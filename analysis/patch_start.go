package analysis

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// A batch of patched runs needs to run only from the first layer it
// patches: before it every row is the unpatched corrupted run, whose
// residual stream at each layer boundary the corrupted run keeps.

// corruptedRun is the unpatched corrupted pass: its metric, and its
// residual stream entering each layer ([1,T,D] by layer, 0..NLayers).
type corruptedRun struct {
	metric float64
	resid  map[int]*hooks.Tensor
}

func (m *Model) corruptedRun(ctx context.Context, spec PatchSpec) (*corruptedRun, error) {
	sites := map[int]hooks.Site{}
	var pts []hooks.Point
	for l := 0; l <= m.T.NLayers(); l++ {
		s, err := m.T.ResidualSite(l)
		if err != nil {
			return nil, err
		}
		sites[l] = s
		if !containsPoint(pts, s.Point) {
			pts = append(pts, s.Point)
		}
	}
	out, err := m.T.Forward(ctx, [][]int{spec.Corrupted}, modelctx.Capture(&modelctx.Filter{Points: pts}))
	if err != nil {
		return nil, fmt.Errorf("patch: corrupted run: %w", err)
	}
	r := &corruptedRun{metric: spec.Metric.Of(lastRow(out.Logits, 0)), resid: map[int]*hooks.Tensor{}}
	for l, s := range sites {
		r.resid[l] = out.Activations[s]
	}
	return r, nil
}

func containsPoint(pts []hooks.Point, p hooks.Point) bool {
	for _, q := range pts {
		if q == p {
			return true
		}
	}
	return false
}

// residRows repeats the residual entering layer l over n rows.
func (r *corruptedRun) residRows(l, n int) *hooks.Tensor {
	one := r.resid[l]
	out := hooks.Zeros(append([]int{n}, one.Shape[1:]...)...)
	for i := 0; i < n; i++ {
		copy(out.Data[i*len(one.Data):], one.Data)
	}
	return out
}

// chunkStart is the layer a batch of patched runs may start at: the
// earliest layer it patches (NLayers for a once point after the last
// layer), or -1 when it must run from the embedding (a once point before
// the layers).
func (m *Model) chunkStart(spec PatchSpec, chunk []patchCell) int {
	L := m.T.NLayers()
	start := L
	for _, c := range chunk {
		l := c.layer
		if l < 0 {
			final, err := m.T.ResidualSite(L)
			if err != nil || (hooks.Site{Point: spec.Point, Layer: -1}).Order(L) <= final.Order(L) {
				return -1
			}
			l = L
		}
		start = min(start, l)
	}
	return start
}

// lastLogits runs one batch of patched rows and returns each row's logits
// at the last position ([B*V]). Unless spec.FullPasses, the batch starts
// at layer start (>= 0) from the corrupted residual stream, and when the
// point lies before the final norm the pass stops at the final residual
// stream, whose last position alone then goes through the model's head
// (final norm and unembedding work position by position): the head, a
// large share of a pass, runs for one position instead of all.
func (m *Model) lastLogits(ctx context.Context, spec PatchSpec, rows [][]int, h *hooks.Hooks, start int, corr *corruptedRun) ([]float32, error) {
	opts := []modelctx.ForwardOption{modelctx.WithHooks(h)}
	if spec.FullPasses {
		start = -1
	}
	if start >= 0 {
		opts = append(opts, modelctx.StartAtLayer(start, corr.residRows(start, len(rows))))
	}
	L := m.T.NLayers()
	final, err := m.T.ResidualSite(L)
	if err != nil {
		return nil, err
	}
	site := hooks.Site{Point: spec.Point, Layer: max(0, L-1)}
	if !spec.Point.PerLayer() {
		site.Layer = -1
	}
	if spec.FullPasses || start >= L || site.Order(L) > final.Order(L) {
		out, err := m.T.Forward(ctx, rows, opts...)
		if err != nil {
			return nil, err
		}
		B, T, V := out.Logits.Shape[0], out.Logits.Shape[1], out.Logits.Shape[2]
		last := make([]float32, 0, B*V)
		for r := 0; r < B; r++ {
			last = append(last, out.Logits.Data[(r*T+T-1)*V:(r*T+T)*V]...)
		}
		return last, nil
	}
	out, err := m.T.Forward(ctx, rows, append(opts, modelctx.StopAtLayer(L))...)
	if err != nil {
		return nil, err
	}
	B, T, D := out.Resid.Shape[0], out.Resid.Shape[1], out.Resid.Shape[2]
	resid := hooks.Zeros(B, 1, D)
	one := make([][]int, B)
	for r := 0; r < B; r++ {
		copy(resid.Data[r*D:(r+1)*D], out.Resid.Data[(r*T+T-1)*D:(r*T+T)*D])
		one[r] = rows[r][T-1:]
	}
	head, err := m.T.Forward(ctx, one, modelctx.StartAtLayer(L, resid))
	if err != nil {
		return nil, err
	}
	return head.Logits.Data, nil
}
