package runtime

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"google.golang.org/protobuf/proto"
)

// The few engine internals the backward pass uses (sessions, values, run
// options), kept in one place so that a rework of the engine's internals
// touches only this file.

// bwdSession creates a session over one backward segment; its weights are
// the engine's shared ones, as for forward segments.
func (e *Engine) bwdSession(m *onnxpb.ModelProto, inputs, outputs []string, tag string) (*session, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("backward plan: encode %s: %w", tag, err)
	}
	var inits []string
	for _, t := range m.GetGraph().GetInitializer() {
		inits = append(inits, t.GetName())
	}
	return newSession(b, inits, inputs, outputs, e.g.Dir, tag, e.o, e.ws, e.pp)
}

// afterSessions lets the engine trim memory once a plan's sessions exist.
func (e *Engine) afterSessions() { e.ws.dropResident() }

// runSession runs a session on values in its input order.
func runSession(s *session, ro *runOptions, ins []*value) ([]*value, error) {
	return s.cs.run(ro, ins)
}

// goValue wraps Go memory (no copy).
func goValue(t *Tensor) (*value, error) { return toValue(t) }

// f32Value wraps a float32 slice (no copy).
func f32Value(shape []int64, data []float32) (*value, error) { return newValue(shape, data) }

// valueF32 views a float32 value's shape and data (no copy).
func valueF32(v *value) ([]int64, []float32, bool) {
	if v.elem != elemFloat {
		return nil, nil, false
	}
	return v.shape, v.f32(), true
}

// cancelOnDone returns run options that stop a session run when ctx ends,
// and a function that releases them (nil options when ctx cannot end).
func cancelOnDone(ctx context.Context) (*runOptions, func(), error) {
	done := ctx.Done()
	if done == nil {
		return nil, func() {}, nil
	}
	ro, err := newRunOptions()
	if err != nil {
		return nil, nil, err
	}
	finished, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-done:
			ro.terminate()
		case <-finished:
		}
	}()
	// Wait for the watcher before releasing: a terminate racing with the
	// release would use freed run options.
	return ro, func() { close(finished); <-exited; ro.release() }, nil
}

// forwardValues runs a forward pass as Engine.Run does, but hands back the
// requested outputs as the run's own values, without copying them; they stay
// valid until release.
func (e *Engine) forwardValues(ctx context.Context, req Request) (map[string]*value, func(), error) {
	hs := req.Hooks
	if hs == nil {
		hs = hooks.Snapshot()
	}
	uses, err := hs.Uses(e.g.NLayers)
	if err != nil {
		return nil, nil, err
	}
	p, err := e.plan(req.Outputs, uses)
	if err != nil {
		return nil, nil, err
	}
	x := newExec(p, hs)
	kept := false
	defer func() {
		if !kept {
			x.release()
		}
	}()
	for name, t := range req.Inputs {
		v, err := toValue(t)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: input %s: %v", ErrInput, name, err)
		}
		x.own(v)
		x.vals[name] = v
	}
	ro, done, err := cancelOnDone(ctx)
	if err != nil {
		return nil, nil, err
	}
	x.ro = ro
	err = x.run(ctx)
	done()
	x.ro = nil
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("run: %w", ctx.Err())
		}
		return nil, nil, err
	}
	out := make(map[string]*value, len(req.Outputs))
	keep := map[*value]bool{}
	for _, name := range req.Outputs {
		v, ok := x.vals[name]
		if !ok {
			return nil, nil, fmt.Errorf("output %s was not computed", name)
		}
		out[name] = v
		keep[v] = true
	}
	// Free the rest now (release is idempotent, so x.release stays safe).
	for _, v := range x.vals {
		if !keep[v] {
			v.release()
		}
	}
	kept = true
	return out, x.release, nil
}
