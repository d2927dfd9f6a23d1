package runtime

import (
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// How often a plan that reads points of several layers is cut at the stage
// boundaries (Graph.Boundaries). Each cut costs one more session run, and
// ONNX Runtime cannot plan memory or fuse across it: reading every point of
// GPT-2 small, cutting at every layer ran at ~0.85 of an uncut pass at 1x16
// and ~0.82 at 1x128, where the uncut plan ran at ~0.92 and ~0.97. Without
// cuts, though, every read tensor of the pass is alive until the pass ends.
// So a plan is cut every K layers, K the most layers whose read tensors fit
// Options.ReadMemory for the request's shapes, known from the graph's
// declared shapes with the inputs' sizes bound to their symbols. Where a
// read tensor's shape is not declared (an imported graph without value
// infos), the plan is cut at every boundary, as it always was.

// DefaultReadMemory is Options.ReadMemory's default.
const DefaultReadMemory = 64 << 20

// dim is one declared dimension: a size, or a symbol bound per request
// (neither: unknown).
type dim struct {
	n   int64
	sym string
}

// declaredDims maps every tensor with a declared shape (graph inputs,
// outputs and value infos) to its dims.
func declaredDims(m *onnxpb.ModelProto) map[string][]dim {
	out := map[string][]dim{}
	g := m.GetGraph()
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetInput(), g.GetOutput(), g.GetValueInfo()} {
		for _, vi := range list {
			shape := vi.GetType().GetTensorType().GetShape()
			if shape == nil {
				continue
			}
			dims := make([]dim, len(shape.GetDim()))
			for i, d := range shape.GetDim() {
				switch v := d.GetValue().(type) {
				case *onnxpb.TensorShapeProto_Dimension_DimValue:
					dims[i].n = v.DimValue
				case *onnxpb.TensorShapeProto_Dimension_DimParam:
					dims[i].sym = v.DimParam
				}
			}
			out[vi.GetName()] = dims
		}
	}
	return out
}

// readStride is how many layers a plan reading the sites of uses may run
// between cuts for this request (1: cut at every boundary).
func (e *Engine) readStride(req Request, uses map[hooks.Site]hooks.Use) int {
	budget := e.o.ReadMemory
	if budget == 0 {
		budget = DefaultReadMemory
	}
	if e.o.StageCuts || budget < 0 || e.g.NLayers < 2 {
		return 1
	}
	hasRead := false
	for _, u := range uses {
		hasRead = hasRead || u == hooks.Read
	}
	if !hasRead {
		return e.g.NLayers // nothing read: no cut for reads (decode steps stop here)
	}
	bound := e.symbols(req)
	perLayer := map[int]int64{}
	seen := map[string]bool{}
	for s, u := range uses {
		ref, ok := e.g.Points[s]
		if u != hooks.Read || !ok || !s.Point.PerLayer() || seen[ref.Tensor] {
			continue
		}
		seen[ref.Tensor] = true
		shape, ok := e.declaredShape(ref.Tensor, bound)
		if !ok {
			return 1 // undeclared, unknown or unbound
		}
		n := int64(4 * numel(shape))
		perLayer[s.Layer] += n
	}
	var most int64
	for _, n := range perLayer {
		most = max(most, n)
	}
	if most == 0 {
		return e.g.NLayers
	}
	return int(min(max(budget/most, 1), int64(e.g.NLayers)))
}

// symbols binds the graph's declared dimension symbols to a request's
// input sizes.
func (e *Engine) symbols(req Request) map[string]int64 {
	e.dimsOnce.Do(func() { e.dims = declaredDims(e.g.Model) })
	bound := map[string]int64{}
	bind := func(name string, shape []int64) {
		dims := e.dims[name]
		if len(dims) != len(shape) {
			return
		}
		for i, d := range dims {
			if d.sym != "" {
				bound[d.sym] = shape[i]
			}
		}
	}
	for name, t := range req.Inputs {
		if t != nil {
			bind(name, t.Shape)
		}
	}
	for name, v := range req.Values {
		if s := v.Shape(); s != nil {
			bind(name, s)
		}
	}
	return bound
}

// declaredShape is tensor name's declared shape with its symbols bound
// (symbols' result); ok is false where it is not declared or a dimension
// is unknown or unbound.
func (e *Engine) declaredShape(name string, bound map[string]int64) ([]int64, bool) {
	dims, ok := e.dims[name]
	if !ok {
		return nil, false
	}
	shape := make([]int64, len(dims))
	for i, d := range dims {
		v := d.n
		if d.sym != "" {
			v = bound[d.sym]
		}
		if v <= 0 {
			return nil, false
		}
		shape[i] = v
	}
	return shape, true
}
