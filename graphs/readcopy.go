package graphs

import "github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"

// A read tensor is a graph output of its segment. ONNX Runtime does not fuse
// a chain of nodes whose last node makes a graph output, so a read tensor
// that ends such a chain and that its segment also consumes goes out
// through an Identity (one copy, Segment.Fetch) and the chain still fuses.
// Every other read tensor goes out as it is: the Identity's copy costs a
// node and a pass over the tensor, ~11 µs for one row of GPT-2 small's
// residual, and most fusions a direct read could lose (a MatMul's bias Add
// into a Gemm, a residual Add into a SkipLayerNorm, a bias into BiasGelu)
// save no more than that. The chains worth the copy are the primitive
// norms and activations: eight or more nodes become one kernel.

// patternTails are the op types a primitive norm or activation ends in: a
// LayerNorm's bias Add or scale Mul, an RMSNorm's scale Mul, a GELU's last
// Mul, a division by the norm.
var patternTails = map[string]bool{"Add": true, "Mul": true, "Div": true}

// patternMarks are the ops found inside those chains and in few other
// places: the norms' root and mean, the activations' curves.
var patternMarks = map[string]bool{
	"Sqrt": true, "Reciprocal": true, "ReduceMean": true, "Pow": true,
	"Erf": true, "Tanh": true, "Sigmoid": true,
}

// patternInner are the ops a walk back from a tail passes through looking
// for a mark: the chains are elementwise arithmetic.
var patternInner = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Neg": true, "Cast": true,
}

// patternDepth bounds that walk: a LayerNorm's bias Add reaches its Sqrt in
// three steps (Add, Mul, Div, Sqrt), a GELU's last Mul its Tanh or Erf in two.
const patternDepth = 4

// endsFusedPattern reports whether n, the node making a read tensor, may be
// the last node of a primitive norm or activation that ONNX Runtime fuses:
// a tail op with a mark within patternDepth steps before it, through
// elementwise nodes whose tensor only the next node of the walk consumes
// and nobody reads (a fusion takes in no node whose tensor is needed
// elsewhere, so a walk from a residual Add stops at the read GELU before
// it). producer maps the segment's tensors to the nodes that make them,
// uses counts each tensor's consumers in the segment, read is the set of
// read tensors.
func endsFusedPattern(n *onnxpb.NodeProto, producer map[string]*onnxpb.NodeProto, uses map[string]int, read map[string]bool) bool {
	if !patternTails[n.GetOpType()] {
		return false
	}
	seen := map[*onnxpb.NodeProto]bool{n: true}
	level := []*onnxpb.NodeProto{n}
	for d := 0; d < patternDepth && len(level) > 0; d++ {
		var next []*onnxpb.NodeProto
		for _, m := range level {
			for _, in := range m.GetInput() {
				p := producer[in]
				if p == nil || seen[p] {
					continue
				}
				seen[p] = true
				switch op := p.GetOpType(); {
				case patternMarks[op]:
					return true
				case patternInner[op] && uses[in] == 1 && !read[in]:
					next = append(next, p)
				}
			}
		}
		level = next
	}
	return false
}
