package modelctx

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// Views is what ForwardViews returns: an Output whose Activations and
// Logits view ONNX Runtime's memory instead of being copied into Go. It owns that
// memory until Release; after Release the Activations' Data is nil, and the
// memory serves the next run (a warm ForwardViews of the same shape
// allocates no tensor memory).
type Views struct {
	*Output
	res *runtime.Result
}

// Release gives the viewed memory back. Releasing twice is harmless.
func (v *Views) Release() {
	if v != nil && v.res != nil {
		v.res.Close()
		v.res = nil
	}
}

// ForwardViews is Forward with Capture(f), handing the captured points out
// as views without copying them (see Views). Clone a tensor to keep it
// past Release. Any Capture option among opts is ignored: f selects.
func (t *Transformer) ForwardViews(ctx context.Context, rows [][]int, f *Filter, opts ...ForwardOption) (*Views, error) {
	var c forwardConfig
	for _, o := range opts {
		o(&c)
	}
	if err := t.checkRows(rows); err != nil {
		return nil, err
	}
	if f == nil {
		return nil, fmt.Errorf("forward views: no filter")
	}
	sites, err := f.sites(t)
	if err != nil {
		return nil, err
	}
	// Points of the graph are viewed; points only hooks make (those of a
	// spliced autoencoder) are copied by an observer, as Capture does.
	var inGraph []hooks.Site
	copied := map[hooks.Site]*hooks.Tensor{}
	hs := c.hooks
	for _, s := range sites {
		if _, ok := t.points[s]; ok {
			inGraph = append(inGraph, s)
			continue
		}
		s := s
		obs := hooks.New()
		o := []hooks.Option{hooks.Trusted()}
		if s.Point.PerLayer() {
			o = append(o, hooks.AtLayers(s.Layer))
		}
		obs.Observe(s.Point, func(_ *hooks.Context, x *hooks.Tensor) error {
			copied[s] = x.Clone()
			return nil
		}, o...)
		hs = append(append([]*hooks.Hooks{}, hs...), obs)
	}
	batch := PadRows(rows, c.pad)
	res, err := t.eng.RunKeep(ctx, runtime.Request{
		Inputs:  t.inputs(batch),
		Outputs: []string{t.man.Inputs.Logits},
		Keep:    []string{t.man.Inputs.Logits},
		Hooks:   t.snapshot(hs...),
		Capture: inGraph,
	})
	if err != nil {
		return nil, err
	}
	// The logits are viewed too where they are in host memory.
	logits, err := res.Kept[t.man.Inputs.Logits].View()
	if err != nil {
		lg, terr := res.Kept[t.man.Inputs.Logits].Tensor()
		if terr != nil {
			res.Close()
			return nil, fmt.Errorf("logits: %w", terr)
		}
		logits = &hooks.Tensor{Shape: toInts(lg.Shape), Data: lg.F32}
	}
	acts := res.Captured
	if acts == nil {
		acts = map[hooks.Site]*hooks.Tensor{}
	}
	for s, x := range copied {
		acts[s] = x
	}
	return &Views{
		Output: &Output{Logits: logits, Activations: acts, Pad: batch.Pad},
		res:    res,
	}, nil
}
