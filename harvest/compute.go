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
	// threads is how many goroutines fold the activations (0: GOMAXPROCS).
	threads int
	// spare holds each pass's sites of the last shard, handed back by
	// recycle: the next shard of that pass resets them instead of
	// allocating its state again.
	spare map[int][]*collect.Site
}

// recycle hands p's sites back to r once p is stored; p must not be used
// after.
func (r *shardRunner) recycle(p *collect.Partial) {
	if r.spare == nil {
		r.spare = map[int][]*collect.Site{}
	}
	r.spare[p.Pass] = p.Sites
}

// sites returns the empty state of every site for examples [first,
// first+count) of pass: the spare sites reset, or new ones.
func (r *shardRunner) sites(pass int, first int64, count int) ([]*collect.Site, error) {
	if old := r.spare[pass]; len(old) == len(r.job.Sites) {
		delete(r.spare, pass)
		for _, st := range old {
			if err := st.Reset(first, count); err != nil {
				return nil, err
			}
		}
		return old, nil
	}
	out := make([]*collect.Site, 0, len(r.job.Sites))
	for i, s := range r.job.Sites {
		var b []float32
		if pass == 2 {
			b = r.bounds[i]
		}
		st, err := collect.NewSite(s.id(), s.Units, r.job.Params, pass, first, count, b)
		if err != nil {
			return nil, err
		}
		st.Threads = r.threads
		out = append(out, st)
	}
	return out, nil
}

// stopOption ends each forward pass after the last site it reads: at the
// first residual boundary at or after every site (no layers beyond it, no
// unembedding), or nowhere when a site comes after the last layer.
func (r *shardRunner) stopOption() ([]modelctx.ForwardOption, error) {
	n := r.m.NLayers()
	last := -1
	for _, s := range r.job.Sites {
		hs, err := s.hookSite()
		if err != nil {
			return nil, err
		}
		last = max(last, hs.Order(n))
	}
	for l := 0; l <= n; l++ {
		b, err := r.m.ResidualSite(l)
		if err != nil {
			return nil, nil // no boundaries to stop at: run the whole pass
		}
		if b.Order(n) >= last {
			return []modelctx.ForwardOption{modelctx.StopAtLayer(l)}, nil
		}
	}
	return nil, nil
}

// run folds examples [first, first+count) into a partial state for pass.
func (r *shardRunner) run(ctx context.Context, pass int, first int64, count int) (*collect.Partial, error) {
	job, T := r.job, r.job.Params.Context
	if first < 0 || count <= 0 || int(first)+count > job.Examples || len(r.tokens) != job.Examples*T {
		return nil, fmt.Errorf("shard [%d,+%d) outside the job's %d examples", first, count, job.Examples)
	}
	sites, err := r.sites(pass, first, count)
	if err != nil {
		return nil, err
	}
	p := &collect.Partial{Pass: pass, First: first, Count: count, Sites: sites}
	opts, err := r.stopOption()
	if err != nil {
		return nil, err
	}
	var batchFirst int64
	var batchN int
	saeIn := make([]*hooks.Tensor, len(job.Sites))
	h := hooks.New()
	opts = append(opts, modelctx.WithHooks(h))
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
		if _, err := r.m.Forward(ctx, rows, opts...); err != nil {
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
