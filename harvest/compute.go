package harvest

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/harvest/collect"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// shardRunner computes shards of one job with one opened model.
type shardRunner struct {
	m      *modelctx.Transformer
	job    *Job
	saes   []*sae.Autoencoder // per site; nil for hook-point sites
	tokens []int32            // every example, job.Params.Context tokens each
	bounds [][]float32        // per site, pass 2
	// afterBatch, when set, runs after every batch (tests slow workers down with it).
	afterBatch func()
}

// run folds examples [first, first+count) into a partial state for pass.
func (r *shardRunner) run(ctx context.Context, pass int, first int64, count int) (*collect.Partial, error) {
	job, T := r.job, r.job.Params.Context
	if first < 0 || count <= 0 || int(first)+count > job.Examples || len(r.tokens) != job.Examples*T {
		return nil, fmt.Errorf("shard [%d,+%d) outside the job's %d examples", first, count, job.Examples)
	}
	p := &collect.Partial{Pass: pass, First: first, Count: count}
	for i, s := range job.Sites {
		var b []float32
		if pass == 2 {
			b = r.bounds[i]
		}
		st, err := collect.NewSite(s.id(), s.Units, job.Params, pass, first, count, b)
		if err != nil {
			return nil, err
		}
		p.Sites = append(p.Sites, st)
	}
	var batchFirst int64
	var batchN int
	saeIn := make([]*hooks.Tensor, len(job.Sites))
	h := hooks.New()
	for i, s := range job.Sites {
		hs, err := s.hookSite()
		if err != nil {
			return nil, err
		}
		opts := []hooks.Option{hooks.Trusted()}
		if hs.Point.PerLayer() {
			opts = append(opts, hooks.AtLayers(hs.Layer))
		}
		st := p.Sites[i]
		if s.SAE != "" {
			h.Observe(hs.Point, func(_ *hooks.Context, x *hooks.Tensor) error {
				saeIn[i] = x.Clone()
				return nil
			}, opts...)
			continue
		}
		h.Observe(hs.Point, func(_ *hooks.Context, x *hooks.Tensor) error {
			return st.AddBatch(batchFirst, x.Data, batchN)
		}, opts...)
	}
	rows := make([][]int, 0, job.Batch)
	for b := first; b < first+int64(count); b += int64(job.Batch) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(job.Batch, int(first+int64(count)-b))
		rows = rows[:0]
		for e := b; e < b+int64(n); e++ {
			row := make([]int, T)
			for t, id := range r.tokens[int(e)*T : int(e+1)*T] {
				row[t] = int(id)
			}
			rows = append(rows, row)
		}
		batchFirst, batchN = b, n
		if _, err := r.m.Forward(ctx, rows, modelctx.WithHooks(h)); err != nil {
			return nil, fmt.Errorf("examples [%d,%d): %w", b, b+int64(n), err)
		}
		for i, ae := range r.saes {
			if ae == nil {
				continue
			}
			z, err := ae.Encode(ctx, saeIn[i])
			if err != nil {
				return nil, fmt.Errorf("examples [%d,%d): encode with %s: %w", b, b+int64(n), job.Sites[i].SAE, err)
			}
			if err := p.Sites[i].AddBatch(b, z.Data, n); err != nil {
				return nil, err
			}
		}
		if r.afterBatch != nil {
			r.afterBatch()
		}
	}
	return p, nil
}
