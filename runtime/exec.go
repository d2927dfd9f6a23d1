package runtime

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	ort "github.com/yalue/onnxruntime_go"
)

// execution is the state of one run of a plan.
type execution struct {
	p     *plan
	hs    *hooks.Set
	vals  map[string]ort.Value
	owned []ort.Value
	next  int // next segment to run
}

func newExec(p *plan, hs *hooks.Set) *execution {
	return &execution{p: p, hs: hs, vals: map[string]ort.Value{}}
}

func (x *execution) own(v ort.Value) { x.owned = append(x.owned, v) }

func (x *execution) release() {
	for _, v := range x.owned {
		v.Destroy()
	}
	x.owned = nil
	x.vals = nil
}

// runSegment runs the next segment.
func (x *execution) runSegment(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	i := x.next
	sg := x.p.segs[i]
	ins := make([]ort.Value, len(sg.inputs))
	for j, name := range sg.inputs {
		v, ok := x.vals[name]
		if !ok {
			return fmt.Errorf("segment %d needs %s, which no input or earlier segment gives (missing model input?)", i, name)
		}
		ins[j] = v
	}
	outs := make([]ort.Value, len(sg.sess.outputs))
	if err := sg.sess.s.Run(ins, outs); err != nil {
		for _, o := range outs {
			if o != nil {
				o.Destroy()
			}
		}
		return fmt.Errorf("run segment %d of %d: %w", i+1, len(x.p.segs), err)
	}
	for j, name := range sg.sess.outputs {
		x.own(outs[j])
		x.vals[name] = outs[j]
	}
	x.next++
	return nil
}

// ensure runs segments until tensor name is available.
func (x *execution) ensure(ctx context.Context, name string) error {
	for {
		if _, ok := x.vals[name]; ok {
			return nil
		}
		if x.next >= len(x.p.segs) {
			return fmt.Errorf("tensor %s is not computed by the plan", name)
		}
		if err := x.runSegment(ctx); err != nil {
			return err
		}
	}
}

func (x *execution) run(ctx context.Context) error {
	for _, s := range x.p.sites {
		if err := x.ensure(ctx, s.ref.Tensor); err != nil {
			return err
		}
		if err := x.callSite(s); err != nil {
			return err
		}
	}
	for x.next < len(x.p.segs) {
		if err := x.runSegment(ctx); err != nil {
			return err
		}
	}
	return nil
}

// callSite hands the site's tensor to its hooks and, for a written site,
// puts what they return in its place.
func (x *execution) callSite(s siteRef) error {
	v := x.vals[s.ref.Tensor]
	ft, ok := v.(*ort.Tensor[float32])
	if !ok {
		return fmt.Errorf("hook point %s: tensor %s is not float32", s.site, s.ref.Tensor)
	}
	shape := toInts(ft.GetShape())
	data := ft.GetData()
	perm := s.ref.Perm
	if isIdentity(perm) {
		perm = nil
	}
	ht := &hooks.Tensor{Shape: shape, Data: data}
	if perm != nil {
		ht = transpose(ht, perm)
	}
	// A read-only site whose value later segments also read: observers get
	// a copy, so they cannot change the pass.
	shared := !s.write && perm == nil && (x.p.lastUse[s.ref.Tensor] >= x.next || x.p.wanted[s.ref.Tensor])
	out, err := x.hs.Call(s.site, ht, shared)
	if err != nil {
		return err
	}
	if !s.write {
		return nil
	}
	if perm != nil {
		out = transpose(out, inversePerm(perm))
	} else if sameBacking(out.Data, data) {
		return nil // edited in place
	}
	nv, err := ort.NewTensor(ort.NewShape(toInt64s(out.Shape)...), out.Data)
	if err != nil {
		return fmt.Errorf("hook point %s: %w", s.site, err)
	}
	x.own(nv)
	x.vals[s.ref.Tensor] = nv
	return nil
}

func sameBacking(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	return unsafe.SliceData(a) == unsafe.SliceData(b)
}

func toInts(s ort.Shape) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}

func toInt64s(s []int) []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = int64(d)
	}
	return out
}

func isIdentity(perm []int) bool {
	for i, p := range perm {
		if p != i {
			return false
		}
	}
	return true
}

func inversePerm(perm []int) []int {
	inv := make([]int, len(perm))
	for i, p := range perm {
		inv[p] = i
	}
	return inv
}

// transpose returns numpy.transpose(t, perm) as a new tensor.
func transpose(t *hooks.Tensor, perm []int) *hooks.Tensor {
	n := len(t.Shape)
	outShape := make([]int, n)
	for i, p := range perm {
		outShape[i] = t.Shape[p]
	}
	inStrides := make([]int, n)
	st := 1
	for i := n - 1; i >= 0; i-- {
		inStrides[i] = st
		st *= t.Shape[i]
	}
	out := make([]float32, len(t.Data))
	idx := make([]int, n)
	for o := range out {
		off := 0
		for i := 0; i < n; i++ {
			off += idx[i] * inStrides[perm[i]]
		}
		out[o] = t.Data[off]
		for i := n - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < outShape[i] {
				break
			}
			idx[i] = 0
		}
	}
	return &hooks.Tensor{Shape: outShape, Data: out}
}

func toValue(t *Tensor) (ort.Value, error) {
	if t == nil {
		return nil, fmt.Errorf("nil tensor")
	}
	shape := ort.NewShape(t.Shape...)
	switch {
	case t.F32 != nil:
		return ort.NewTensor(shape, t.F32)
	case t.I64 != nil:
		return ort.NewTensor(shape, t.I64)
	case t.Bool != nil:
		return ort.NewTensor(shape, t.Bool)
	}
	// An empty tensor of some dimension 0: float32 by default.
	if shape.FlattenedSize() == 0 {
		return ort.NewTensor(shape, []float32{})
	}
	return nil, fmt.Errorf("tensor of shape %v has no data", t.Shape)
}

func fromValue(v ort.Value) (*Tensor, error) {
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return &Tensor{Shape: append([]int64(nil), t.GetShape()...), F32: t.GetData()}, nil
	case *ort.Tensor[int64]:
		return &Tensor{Shape: append([]int64(nil), t.GetShape()...), I64: t.GetData()}, nil
	case *ort.Tensor[bool]:
		return &Tensor{Shape: append([]int64(nil), t.GetShape()...), Bool: t.GetData()}, nil
	}
	return nil, fmt.Errorf("unsupported output type %T", v)
}
