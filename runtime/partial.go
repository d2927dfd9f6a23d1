package runtime

import (
	"errors"
	"fmt"
	"slices"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"google.golang.org/protobuf/proto"
)

// Partial runs. A request may start at a site whose value the caller gives
// (Request.StartAt: a residual boundary, such as the input of a layer) and
// may stop at a site (Request.StopAt): the plan then holds only the nodes
// between the two, so a partial run costs only the layers it runs. The
// sites are named by the caller (the model knows which sites carry its
// residual stream); the engine knows nothing of any architecture's names.

// ErrSpan reports a partial run that cannot be planned.
var ErrSpan = errors.New("bad partial run")

// span is the part of the graph a request runs: after start (exclusive)
// through stop (inclusive); nil ends are open.
type span struct {
	start, stop *hooks.Site
}

func spanOf(req Request) span { return span{start: req.StartAt, stop: req.StopAt} }

func (s span) key() string {
	k := ""
	if s.start != nil {
		k += "|start:" + s.start.String()
	}
	if s.stop != nil {
		k += "|stop:" + s.stop.String()
	}
	return k
}

// contains reports whether the span reaches site x.
func (s span) contains(x hooks.Site, nLayers int) bool {
	o := x.Order(nLayers)
	if s.start != nil && o <= s.start.Order(nLayers) {
		return false
	}
	return s.stop == nil || o <= s.stop.Order(nLayers)
}

// check validates a request's span against the graph: both ends must be
// sites of the model with the reference layout, the start's value must be
// among the inputs, and the start must come before the stop.
func (e *Engine) checkSpan(req Request) error {
	s := spanOf(req)
	for _, end := range []*hooks.Site{s.start, s.stop} {
		if end == nil {
			continue
		}
		ref, ok := e.g.Points[*end]
		if !ok {
			return fmt.Errorf("%w: %w: %s", ErrSpan, ErrNoPoint, end)
		}
		if !isIdentity(ref.Perm) {
			return fmt.Errorf("%w: %s is stored transposed", ErrSpan, end)
		}
	}
	if s.start != nil {
		name := e.g.Points[*s.start].Tensor
		if _, ok := req.Inputs[name]; !ok {
			if _, ok := req.Values[name]; !ok {
				return fmt.Errorf("%w: the run starts at %s, but its value (tensor %s) is not among the inputs", ErrSpan, s.start, name)
			}
		}
	}
	if s.start != nil && s.stop != nil && s.stop.Order(e.g.NLayers) <= s.start.Order(e.g.NLayers) {
		return fmt.Errorf("%w: stop %s is not after start %s", ErrSpan, s.stop, s.start)
	}
	return nil
}

// window keeps the hooked sites a partial run reaches.
func (s span) window(uses map[hooks.Site]hooks.Use, nLayers int) map[hooks.Site]hooks.Use {
	if s.start == nil && s.stop == nil {
		return uses
	}
	out := make(map[hooks.Site]hooks.Use, len(uses))
	for site, u := range uses {
		if s.contains(site, nLayers) {
			out[site] = u
		}
	}
	return out
}

// trimCuts drops the boundary cuts outside the span: a cut is a target of
// the split, so one before the start or after the stop would make the plan
// run what the partial run leaves out.
func (s span) trimCuts(cuts []string, cutSeen map[string]bool, g *Graph) []string {
	if s.start == nil && s.stop == nil {
		return cuts
	}
	drop := map[string]bool{}
	added := g.Boundaries
	if g.Head != nil {
		added = append(slices.Clip(added), *g.Head)
	}
	for _, b := range added {
		if ref, ok := g.Points[b]; ok && !s.contains(b, g.NLayers) {
			drop[ref.Tensor] = true
		}
	}
	out := cuts[:0]
	for _, c := range cuts {
		if drop[c] {
			delete(cutSeen, c)
			continue
		}
		out = append(out, c)
	}
	return out
}

// startModel returns a copy of m in which tensor is a graph input: the
// node that computed it writes a spare name instead, so the split leaves
// out whatever only that node needed.
func startModel(m *onnxpb.ModelProto, tensor string) (*onnxpb.ModelProto, error) {
	c := proto.Clone(m).(*onnxpb.ModelProto)
	g := c.GetGraph()
	for _, in := range g.GetInput() {
		if in.GetName() == tensor {
			return c, nil // already an input: nothing computes it
		}
	}
	found := false
	for _, n := range g.GetNode() {
		for i, o := range n.GetOutput() {
			if o == tensor {
				n.Output[i] = tensor + ".replaced_by_start"
				found = true
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: no node computes %s", ErrSpan, tensor)
	}
	var vi *onnxpb.ValueInfoProto
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetValueInfo(), g.GetOutput()} {
		for _, v := range list {
			if v.GetName() == tensor && v.GetType().GetTensorType().GetElemType() != 0 {
				vi = proto.Clone(v).(*onnxpb.ValueInfoProto)
			}
		}
	}
	if vi == nil {
		vi = graphs.ValueInfo(tensor, onnxpb.TensorProto_FLOAT)
	}
	g.Input = append(g.Input, vi)
	return c, nil
}
