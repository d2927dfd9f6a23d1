package runtime

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// The forward and backward executions run their plans the same way: segments
// in order, each after the hooks of the cuts it reads, its inputs taken from
// the values so far. What differs is what they keep and free, which each
// does with the outputs runSegment hands back.

// runSegment runs session sess over the named inputs of vals, first calling
// callCut for every site cut at one of them (cutSites: tensor -> sites).
// what names the segment in errors ("segment 3 of 7"); pre gives memory for
// outputs, as csession.run takes it.
func runSegment(ctx context.Context, ro *runOptions, sess *session, inputs []string, vals map[string]*value,
	cutSites map[string][]int, callCut func(site int) error, what string, pre []*value) ([]*value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The hooks of every cut this segment reads run first, even where the
	// site order would call them later (a graph whose hook order is not its
	// data order).
	for _, name := range inputs {
		for _, si := range cutSites[name] {
			if err := callCut(si); err != nil {
				return nil, err
			}
		}
	}
	ins := make([]*value, len(inputs))
	for j, name := range inputs {
		v, ok := vals[name]
		if !ok {
			return nil, fmt.Errorf("%s needs %s, which no input or earlier segment gives (missing model input?)", what, name)
		}
		ins[j] = v
	}
	outs, err := sess.cs.run(ro, ins, pre)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", what, err)
	}
	return outs, nil
}

// runUntil runs segments (step) until vals holds name.
func runUntil(ctx context.Context, vals map[string]*value, name string, more func() bool, step func(context.Context) error) error {
	for {
		if _, ok := vals[name]; ok {
			return nil
		}
		if !more() {
			return fmt.Errorf("tensor %s is not computed by the plan", name)
		}
		if err := step(ctx); err != nil {
			return err
		}
	}
}

// visitSites reaches each site in order: the segments that compute its
// tensor (tensorOf) run first, then its hooks (callOnce, which skips a site
// already called as a cut).
func visitSites(ctx context.Context, n int, called []bool, tensorOf func(int) string,
	ensure func(context.Context, string) error, callOnce func(int) error) error {
	for i := 0; i < n; i++ {
		if called[i] {
			continue
		}
		if err := ensure(ctx, tensorOf(i)); err != nil {
			return err
		}
		if err := callOnce(i); err != nil {
			return err
		}
	}
	return nil
}

// hookTensor shows a site's value to hooks in the reference layout (perm,
// nil for none).
func hookTensor(v *value, perm []int) *hooks.Tensor {
	ht := &hooks.Tensor{Shape: toInts(v.shape), Data: v.f32()}
	if perm != nil {
		ht = transpose(ht, perm)
	}
	return ht
}

// writeBack turns what a site's writing hooks returned into the value the
// pass continues from: nil when they edited data (the value's own) in place.
func writeBack(out *hooks.Tensor, data []float32, perm []int) (*value, error) {
	if perm != nil {
		out = transpose(out, inversePerm(perm))
	} else if sameBacking(out.Data, data) {
		return nil, nil
	}
	return newValue(toInt64s(out.Shape), out.Data)
}
