package modelctx

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// Views is what ForwardViews returns: an Output whose Activations and
// Logits are not copied: the Logits, and the Activations whose shapes the
// run knows before computing them (all of an exported model's), are written
// by ONNX Runtime straight into memory the Transformer pools; the other
// Activations view ONNX Runtime's memory. It owns that memory until
// Release; after Release the Logits are nil and the Activations' Data is
// nil, and the memory serves the next run (a warm ForwardViews of the same
// shape allocates no tensor memory).
type Views struct {
	*Output
	res *runtime.Result
	// inGo are the buffers the run wrote activations into: pooled Go
	// memory (the memory Forward's captures use too), which Release gives
	// back; captured are all the activations the run captured.
	inGo     [][]float32
	captured []*hooks.Tensor
	pool     *bufPool
}

// Release gives the viewed memory back. Releasing twice is harmless.
func (v *Views) Release() {
	if v == nil || v.res == nil {
		return
	}
	v.res.Close()
	v.res = nil
	for _, x := range v.captured {
		x.Data = nil
	}
	v.Logits = nil
	v.pool.put(v.inGo...)
	v.inGo, v.captured = nil, nil
	for s := range v.Activations {
		delete(v.Activations, s)
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
	// Points of the graph are viewed (or written into pooled memory by
	// the run); points only hooks make (those of a spliced autoencoder) are
	// copied by an observer, as Capture does.
	var inGraph, others []hooks.Site
	for _, s := range sites {
		if _, ok := t.points[s]; ok {
			inGraph = append(inGraph, s)
		} else {
			others = append(others, s)
		}
	}
	copied := map[hooks.Site]*hooks.Tensor{}
	hs := t.copyingObservers(c.hooks, others, func(s hooks.Site, x *hooks.Tensor) { copied[s] = x.Clone() })
	batch := PadRows(rows, c.pad)
	// The logits are written into pooled memory too (runtime.Request.Into:
	// in place where the run knows their shape, copied otherwise).
	into := t.bufs.alloc(t.logitsLen(batch))
	res, err := t.eng.RunKeep(ctx, runtime.Request{
		Inputs:  t.inputs(batch),
		Outputs: []string{t.man.Inputs.Logits},
		Into:    map[string][]float32{t.man.Inputs.Logits: into},
		Hooks:   t.snapshot(hs...),
		Capture: inGraph,
		Alloc:   t.bufs.alloc,
		Free:    t.bufs.give,
	})
	if err != nil {
		t.bufs.give(into)
		return nil, err
	}
	lg := res.Tensors[t.man.Inputs.Logits]
	logits := &hooks.Tensor{Shape: toInts(lg.Shape), Data: lg.F32}
	v := &Views{Output: &Output{Logits: logits, Activations: copied, Pad: batch.Pad}, res: res, pool: &t.bufs}
	if sameSlice(lg.F32, into) {
		v.inGo = append(v.inGo, into)
	} else {
		t.bufs.give(into)
	}
	// Sites sharing one tensor share its view, or its pooled buffer,
	// which goes back to the pool once.
	owns := ownBuffers(res)
	for s, x := range res.Captured {
		v.Activations[s] = x
		v.captured = append(v.captured, x)
		if owns[s] {
			v.inGo = append(v.inGo, x.Data)
		}
	}
	return v, nil
}
