package graphs

import (
	"google.golang.org/protobuf/proto"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
)

// FuseReadNorms rewrites, in a copy of m, every LayerNorm written out in
// primitive ops whose inner tensors are read but not written: ONNX Runtime
// fuses the pattern
//
//	mean = ReduceMean(x); xc = Sub(x, mean)
//	s = Sqrt(Add(ReduceMean(Pow(xc, 2)), eps)); y = Div(xc, s)
//	out = Add(Mul(y, gain), bias)
//
// into one LayerNormalization kernel only while none of xc, s, y leaves the
// graph; reading any of them ran all nine ops (the squaring Pow alone cost
// more than the fused kernel). Here one LayerNormalization makes out with
// its optional Mean and InvStdDev outputs, and the read tensors are
// recomputed from them: xc = x - Mean, y = xc * InvStdDev,
// s = 1 / InvStdDev (two element-wise ops over the activations, one over
// the per-position statistics). Split drops whichever of those nobody reads.
//
// A pattern is left as it is when an inner tensor is cut (a writing hook
// must feed the ops after it), when one of its intermediates has another
// consumer, or when the model's opset has no LayerNormalization (below
// 17). m itself is returned when nothing matched; n is the number of norms
// rewritten.
func FuseReadNorms(m *onnxpb.ModelProto, reads, cuts []string) (out *onnxpb.ModelProto, n int) {
	if opsetOf(m, "") < 17 || len(reads) == 0 {
		return m, 0
	}
	g := m.GetGraph()
	read := map[string]bool{}
	for _, r := range reads {
		read[r] = true
	}
	cut := map[string]bool{}
	for _, c := range cuts {
		cut[c] = true
	}
	nodes := g.GetNode()
	producer := map[string]int{}
	consumers := map[string][]int{}
	for i, nd := range nodes {
		for _, o := range nd.GetOutput() {
			producer[o] = i
		}
		for _, in := range nodeInputs(nd) {
			consumers[in] = append(consumers[in], i)
		}
	}
	graphOut := map[string]bool{}
	for _, o := range g.GetOutput() {
		graphOut[o.GetName()] = true
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	mt := normMatcher{nodes: nodes, producer: producer, consumers: consumers, inits: inits, graphOut: graphOut, read: read, cut: cut, infos: shapeIndex(g)}
	var found []layerNorm
	for i, nd := range nodes {
		if nd.GetOpType() != "Div" {
			continue
		}
		if ln, ok := mt.match(i); ok {
			found = append(found, ln)
		}
	}
	if len(found) == 0 {
		return m, 0
	}
	out = proto.Clone(m).(*onnxpb.ModelProto)
	g = out.GetGraph()
	drop := map[int]bool{}
	insert := map[int][]*onnxpb.NodeProto{}
	for _, ln := range found {
		for _, i := range ln.nodes {
			drop[i] = true
		}
		insert[ln.first] = ln.replacement()
	}
	var kept []*onnxpb.NodeProto
	for i, nd := range g.GetNode() {
		kept = append(kept, insert[i]...)
		if !drop[i] {
			kept = append(kept, nd)
		}
	}
	g.Node = kept
	return out, len(found)
}

// layerNorm is one matched pattern: the tensors FuseReadNorms names and the
// indexes of the nine nodes it replaces.
type layerNorm struct {
	x, gain, bias, mean, xc, s, y, out string
	eps                                float32
	nodes                              []int
	first                              int
}

// replacement is the fused norm and the recomputed inner tensors.
func (ln layerNorm) replacement() []*onnxpb.NodeProto {
	inv := ln.s + "#invstd"
	node := func(op string, ins, outs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{Name: proto.String(outs[0] + "#" + op), OpType: proto.String(op), Input: ins, Output: outs, Attribute: attrs}
	}
	return []*onnxpb.NodeProto{
		node("LayerNormalization", []string{ln.x, ln.gain, ln.bias}, []string{ln.out, ln.mean, inv},
			AttrInt("axis", -1), AttrFloat("epsilon", ln.eps)),
		node("Sub", []string{ln.x, ln.mean}, []string{ln.xc}),
		node("Mul", []string{ln.xc, inv}, []string{ln.y}),
		node("Reciprocal", []string{inv}, []string{ln.s}),
	}
}

type normMatcher struct {
	nodes     []*onnxpb.NodeProto
	producer  map[string]int
	consumers map[string][]int
	inits     map[string]*onnxpb.TensorProto
	graphOut  map[string]bool
	read, cut map[string]bool
	infos     map[string]*onnxpb.ValueInfoProto
}

// op returns the node making t if it is of type op with n inputs.
func (mt *normMatcher) op(t, op string, n int) (*onnxpb.NodeProto, int, bool) {
	i, ok := mt.producer[t]
	if !ok {
		return nil, 0, false
	}
	nd := mt.nodes[i]
	if nd.GetOpType() != op || len(nd.GetInput()) != n || len(nd.GetOutput()) != 1 {
		return nil, 0, false
	}
	return nd, i, true
}

// only reports whether t is an intermediate the pattern alone uses: its
// consumers are exactly the nodes given, and it is neither read, cut nor a
// graph output.
func (mt *normMatcher) only(t string, users ...int) bool {
	if mt.read[t] || mt.cut[t] || mt.graphOut[t] {
		return false
	}
	return sameSet(mt.consumers[t], users)
}

// inner reports whether an inner hook tensor may be recomputed: not cut,
// and consumed by nothing but the pattern's own nodes.
func (mt *normMatcher) inner(t string, users ...int) bool {
	return !mt.cut[t] && sameSet(mt.consumers[t], users)
}

func sameSet(got, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for _, g := range got {
		found := false
		for _, w := range want {
			found = found || g == w
		}
		if !found {
			return false
		}
	}
	return true
}

// lastAxisMean reports whether nd reduces the last axis keeping it.
func lastAxisMean(nd *onnxpb.NodeProto) bool {
	if nd.GetOpType() != "ReduceMean" {
		return false
	}
	if a := attr(nd, "keepdims"); a != nil && a.GetI() != 1 {
		return false
	}
	a := attr(nd, "axes")
	return a != nil && len(a.GetInts()) == 1 && a.GetInts()[0] == -1
}

// other returns the input of a two-input node that is not t, and whether t
// is one of its inputs.
func other(nd *onnxpb.NodeProto, t string) (string, bool) {
	in := nd.GetInput()
	if len(in) != 2 || len(nd.GetOutput()) != 1 {
		return "", false
	}
	switch {
	case in[0] == t:
		return in[1], true
	case in[1] == t:
		return in[0], true
	}
	return "", false
}

// match matches the pattern ending in the Div at index d.
func (mt *normMatcher) match(d int) (layerNorm, bool) {
	var ln layerNorm
	div := mt.nodes[d]
	if len(div.GetInput()) != 2 || len(div.GetOutput()) != 1 {
		return ln, false
	}
	ln.xc, ln.s, ln.y = div.GetInput()[0], div.GetInput()[1], div.GetOutput()[0]
	sqrt, iSqrt, ok := mt.op(ln.s, "Sqrt", 1)
	if !ok {
		return ln, false
	}
	add, iAdd, ok := mt.op(sqrt.GetInput()[0], "Add", 2)
	if !ok {
		return ln, false
	}
	v, iVar, eps, ok := mt.varianceAndEps(add)
	if !ok {
		return ln, false
	}
	ln.eps = eps
	pow, iPow, ok := mt.op(v.GetInput()[0], "Pow", 2)
	if !ok || pow.GetInput()[0] != ln.xc || !mt.isScalar(pow.GetInput()[1], 2) {
		return ln, false
	}
	sub, iSub, ok := mt.op(ln.xc, "Sub", 2)
	if !ok {
		return ln, false
	}
	ln.x, ln.mean = sub.GetInput()[0], sub.GetInput()[1]
	mean, iMean, ok := mt.op(ln.mean, "ReduceMean", 1)
	if !ok || !lastAxisMean(mean) || mean.GetInput()[0] != ln.x {
		return ln, false
	}
	ys := mt.consumers[ln.y]
	if len(ys) != 1 || mt.nodes[ys[0]].GetOpType() != "Mul" {
		return ln, false
	}
	iMul := ys[0]
	mul := mt.nodes[iMul]
	var isY bool
	if ln.gain, isY = other(mul, ln.y); !isY || !mt.isVector(ln.gain) {
		return ln, false
	}
	yg := mul.GetOutput()[0]
	ygs := mt.consumers[yg]
	if len(ygs) != 1 || mt.nodes[ygs[0]].GetOpType() != "Add" {
		return ln, false
	}
	iBias := ygs[0]
	if ln.bias, isY = other(mt.nodes[iBias], yg); !isY || !mt.isVector(ln.bias) {
		return ln, false
	}
	ln.out = mt.nodes[iBias].GetOutput()[0]
	if !mt.normalisedWidth(ln) {
		return ln, false
	}
	// Worth it only when an inner tensor is read; possible only when the
	// intermediates are the pattern's own and no inner tensor is written.
	if !mt.read[ln.xc] && !mt.read[ln.s] && !mt.read[ln.y] {
		return ln, false
	}
	if !mt.only(ln.mean, iSub) || !mt.only(pow.GetOutput()[0], iVar) || !mt.only(v.GetOutput()[0], iAdd) ||
		!mt.only(add.GetOutput()[0], iSqrt) || !mt.only(yg, iBias) ||
		!mt.inner(ln.xc, iPow, d) || !mt.inner(ln.s, d) || !mt.inner(ln.y, iMul) {
		return ln, false
	}
	ln.nodes = []int{iMean, iSub, iPow, iVar, iAdd, iSqrt, d, iMul, iBias}
	ln.first = iMean
	for _, i := range ln.nodes {
		ln.first = min(ln.first, i)
	}
	return ln, true
}

// varianceAndEps splits Add(ReduceMean(...), eps) in either order.
func (mt *normMatcher) varianceAndEps(add *onnxpb.NodeProto) (*onnxpb.NodeProto, int, float32, bool) {
	for j := 0; j < 2; j++ {
		v, i, ok := mt.op(add.GetInput()[j], "ReduceMean", 1)
		if !ok || !lastAxisMean(v) {
			continue
		}
		if eps, ok := mt.scalar(add.GetInput()[1-j]); ok && eps > 0 {
			return v, i, eps, true
		}
	}
	return nil, 0, 0, false
}

// scalar reads a one-element float32 initializer.
func (mt *normMatcher) scalar(name string) (float32, bool) {
	t, ok := mt.inits[name]
	if !ok || t.GetDataType() != int32(Float) || t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return 0, false
	}
	for _, d := range t.GetDims() {
		if d != 1 {
			return 0, false
		}
	}
	v, ok := scalarValue(t)
	return float32(v), ok
}

func (mt *normMatcher) isScalar(name string, want float32) bool {
	v, ok := mt.scalar(name)
	return ok && v == want
}

// isVector reports whether name is a 1-D float32 initializer (a norm's gain
// or bias over the last axis).
func (mt *normMatcher) isVector(name string) bool {
	t, ok := mt.inits[name]
	return ok && t.GetDataType() == int32(Float) && len(t.GetDims()) == 1
}

// normalisedWidth reports whether the gain and the bias have one entry per
// element of the normalised axis, as LayerNormalization requires (the
// primitive ops would broadcast a shorter one): the same length, above 1,
// and the declared last dimension of the norm's tensors where one is known.
func (mt *normMatcher) normalisedWidth(ln layerNorm) bool {
	g, b := mt.inits[ln.gain].GetDims()[0], mt.inits[ln.bias].GetDims()[0]
	if g != b || g < 2 {
		return false
	}
	for _, t := range []string{ln.x, ln.xc, ln.y, ln.out} {
		dims := mt.infos[t].GetType().GetTensorType().GetShape().GetDim()
		if len(dims) == 0 {
			continue
		}
		if last := dims[len(dims)-1]; last.GetDimParam() == "" && last.GetDimValue() != g {
			return false
		}
	}
	return true
}

// opsetOf is the model's opset version for a domain ("" is ONNX's).
func opsetOf(m *onnxpb.ModelProto, domain string) int64 {
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == domain || (domain == "" && o.GetDomain() == "ai.onnx") {
			return o.GetVersion()
		}
	}
	return 0
}
