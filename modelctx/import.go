package modelctx

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// ErrPointShape is returned by Import when a mapped tensor does not have
// the layout of its hook point (a wrong tensor, or a missing
// layout.perm_onnx_to_reference).
var ErrPointShape = errors.New("hook-map tensor does not have its point's layout")

// Import brings an ONNX transformer into an exported model directory
// (export.Import) and checks it: one forward pass over two tokens reads
// every mapped point, each must have its point's layout (docs/behaviour.md §3.2) after
// the hook map's permutation, and the dimensions it shows (d_model, d_ff,
// heads, d_head, vocab) fill those the graph and hook map left unknown.
func Import(onnxPath, hookmapPath, out string, o export.ImportOptions, opts ...Option) (*export.Manifest, error) {
	next := o.Probe
	o.Probe = func(dir string, m *export.Manifest) error {
		if err := probe(dir, m, opts); err != nil {
			return err
		}
		if next != nil {
			return next(dir, m)
		}
		return nil
	}
	return export.Import(onnxPath, hookmapPath, out, o)
}

func probe(dir string, m *export.Manifest, opts []Option) (err error) {
	t, err := Open(dir, opts...)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := t.Close(); err == nil {
			err = cerr
		}
	}()
	const seq = 2
	res, err := t.Forward(context.Background(), [][]int{make([]int, seq)}, Capture(AllPoints))
	if err != nil {
		return fmt.Errorf("forward pass over %d tokens: %w", seq, err)
	}
	dims := map[hooks.Dim]*int{
		hooks.Model:   &m.Config.DModel,
		hooks.FF:      &m.Config.DFF,
		hooks.Heads:   &m.Config.NHeads,
		hooks.HeadDim: &m.Config.DHead,
		hooks.Vocab:   &m.Config.NVocab,
	}
	fixed := map[hooks.Dim]int{hooks.Batch: 1, hooks.Seq: seq, hooks.Keys: seq, hooks.One: 1}
	check := func(site hooks.Site, shape []int) error {
		want := site.Point.Shape()
		bad := func() error {
			return fmt.Errorf("%w: %s is %v, its layout is [%s] (check the entry's tensor and layout.perm_onnx_to_reference)",
				ErrPointShape, site, shape, joinDims(want))
		}
		if len(shape) != len(want) {
			return bad()
		}
		for i, d := range want {
			if v, ok := fixed[d]; ok {
				if shape[i] != v {
					return bad()
				}
				continue
			}
			p := dims[d]
			switch {
			case p == nil:
			case *p == 0:
				*p = shape[i]
			case *p != shape[i]:
				return fmt.Errorf("%w: %s is %v: its %s axis is %d, elsewhere the model has %d", ErrPointShape, site, shape, d, shape[i], *p)
			}
		}
		return nil
	}
	for _, s := range t.Sites() {
		a, ok := res.Activations[s]
		if !ok {
			return fmt.Errorf("%s was not captured", s)
		}
		if err := check(s, a.Shape); err != nil {
			return err
		}
	}
	return check(hooks.Site{Point: hooks.LogitsPoint, Layer: -1}, res.Logits.Shape)
}

func joinDims(ds []hooks.Dim) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = string(d)
	}
	return strings.Join(s, ",")
}
