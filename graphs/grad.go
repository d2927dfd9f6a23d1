package graphs

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Errors of differentiation.
var (
	ErrNoVJP = errors.New("no gradient rule for operator")
	ErrGrad  = errors.New("cannot differentiate graph")
)

// Names of the tensors a backward graph reads and writes.
const (
	gradPrefix     = "grad/"
	seedPrefix     = "seed/"
	computedSuffix = "#computed"
)

// GradName is the backward graph's output holding d(loss)/d(t).
func GradName(t string) string { return gradPrefix + t }

// SeedName is the backward graph's input holding the upstream gradient
// d(loss)/d(t) of a seed tensor t (the root of the backward pass).
func SeedName(t string) string { return seedPrefix + t }

// GradSpec says what to differentiate.
type GradSpec struct {
	// Seeds are forward tensors whose upstream gradients the caller feeds
	// (inputs SeedName(t)): the loss enters there.
	Seeds []string
	// Wrt are the forward tensors whose gradients the backward graph outputs
	// (GradName(t)): segment inputs and hook points.
	Wrt []string
	// Stop are forward tensors through which no gradient flows to their
	// producer (the original's detach); their own gradient is still computed.
	Stop []string
	// Saved are forward tensors the caller feeds with their forward values;
	// every other forward value a rule needs is recomputed inside the
	// backward graph from saved values, the model's inputs and initializers.
	Saved []string
	// Replaced are saved tensors whose values differ from what their
	// producer computed (a hook replaced them): rules that need the
	// producer's own output recompute it instead of reading the saved value.
	Replaced []string
}

// Gradient is a backward graph and its interface.
type Gradient struct {
	Model   *onnxpb.ModelProto
	Seeds   []string // inputs SeedName(t), one per seed with a path to some wrt tensor
	Forward []string // forward tensors read as inputs (saved values or model inputs)
	Outputs []string // GradName(t) for every wrt tensor with a gradient path, in spec order
	Zero    []string // wrt tensors no gradient reaches (from no seed, or cut off by Stop)
}

// bwdTranspose records a Transpose the backward graph made.
type bwdTranspose struct {
	in   string
	perm []int64
}

// differ holds the state of one differentiation.
type differ struct {
	m         *onnxpb.ModelProto
	nodes     []*onnxpb.NodeProto
	order     []int
	pos       map[int]int // node index -> position in order
	producer  map[string]int
	users     map[string][]int
	inits     map[string]*onnxpb.TensorProto
	constVals map[string]*onnxpb.TensorProto // initializers and Constant nodes' values
	inputs    map[string]bool
	types     map[string]onnxpb.TensorProto_DataType
	shapes    map[string]Shape
	opset     int64

	wrt, stop, saved, replaced, seed map[string]bool
	active                           map[string]bool

	b        *Builder
	contrib  map[string][]string
	final    map[string]string
	need     []string
	needSet  map[string]bool
	consts   map[string]string
	fwdNodes map[int]bool            // forward nodes copied for recomputation
	renamed  map[int]string          // node index -> output renamed to computedSuffix
	inverse  []*onnxpb.NodeProto     // nodes recomputing a tensor from a saved consumer output
	used     map[string]bool         // forward tensors read as graph inputs
	bwdT     map[string]bwdTranspose // backward tensors made by a Transpose
	initUsed map[string]bool
}

// Backward builds the backward graph of m: reverse-mode differentiation
// with a vector-Jacobian rule per operator, emitting ONNX nodes. The graph
// reads the seeds' upstream gradients and the forward values it needs, and
// outputs the gradient of every wrt tensor.
func Backward(m *onnxpb.ModelProto, spec GradSpec) (*Gradient, error) {
	d, err := newDiffer(m, spec)
	if err != nil {
		return nil, err
	}
	if err := d.sweep(); err != nil {
		return nil, err
	}
	return d.assemble(spec)
}

func toSet(names []string) map[string]bool {
	s := make(map[string]bool, len(names))
	for _, n := range names {
		s[n] = true
	}
	return s
}

func newDiffer(m *onnxpb.ModelProto, spec GradSpec) (*differ, error) {
	g := m.GetGraph()
	order, err := TopoOrder(g)
	if err != nil {
		return nil, err
	}
	d := &differ{
		m: m, nodes: g.GetNode(), order: order, pos: map[int]int{},
		producer: map[string]int{}, users: map[string][]int{},
		inits: map[string]*onnxpb.TensorProto{}, inputs: map[string]bool{},
		types: InferTypes(m), shapes: InferShapes(m),
		wrt: toSet(spec.Wrt), stop: toSet(spec.Stop), saved: toSet(spec.Saved),
		replaced: toSet(spec.Replaced), seed: toSet(spec.Seeds),
		b: NewBuilder(g.GetName() + ".backward"), contrib: map[string][]string{},
		final: map[string]string{}, needSet: map[string]bool{}, consts: map[string]string{},
		fwdNodes: map[int]bool{}, renamed: map[int]string{}, used: map[string]bool{}, initUsed: map[string]bool{},
		bwdT: map[string]bwdTranspose{},
	}
	d.b.SetPrefix("bwd/")
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			d.opset = o.GetVersion()
		}
	}
	if d.opset < 13 {
		return nil, fmt.Errorf("%w: opset %d (differentiation needs opset 13 or later)", ErrGrad, d.opset)
	}
	for k, i := range order {
		d.pos[i] = k
	}
	for i, n := range d.nodes {
		for _, o := range n.GetOutput() {
			if o != "" {
				d.producer[o] = i
			}
		}
		for _, in := range nodeInputs(n) {
			d.users[in] = append(d.users[in], i)
		}
	}
	d.constVals = map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		d.inits[t.GetName()] = t
		d.constVals[t.GetName()] = t
	}
	for _, n := range d.nodes {
		if a := attr(n, "value"); n.GetOpType() == "Constant" && a != nil && a.GetT() != nil && len(n.GetOutput()) == 1 {
			d.constVals[n.GetOutput()[0]] = a.GetT()
		}
	}
	for _, in := range g.GetInput() {
		d.inputs[in.GetName()] = true
	}
	for _, list := range [][]string{spec.Seeds, spec.Wrt, spec.Stop} {
		for _, t := range list {
			if !d.exists(t) {
				return nil, fmt.Errorf("%w: %s", ErrNoTensor, t)
			}
		}
	}
	for _, t := range spec.Seeds {
		if !d.isFloat(t) {
			return nil, fmt.Errorf("%w: seed %s is not a float tensor", ErrGrad, t)
		}
	}
	d.markActive()
	return d, nil
}

func (d *differ) exists(t string) bool {
	_, p := d.producer[t]
	return p || d.inputs[t] || d.inits[t] != nil
}

func (d *differ) isFloat(t string) bool {
	switch d.types[t] {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
		return true
	}
	return false
}

// zeroGradOps pass no gradient: ReduceMax/ReduceMin are detached, as the
// original detaches the max of its explicit softmax; the rest compute
// integers, booleans or shapes.
var zeroGradOps = map[string]bool{
	"ReduceMax": true, "ReduceMin": true, "Shape": true, "Size": true, "ArgMax": true, "ArgMin": true,
	"Equal": true, "Less": true, "Greater": true, "LessOrEqual": true, "GreaterOrEqual": true,
	"Not": true, "And": true, "Or": true, "Xor": true, "IsNaN": true, "IsInf": true, "Sign": true,
	"Floor": true, "Ceil": true, "Round": true, "NonZero": true, "ConstantOfShape": true, "Range": true,
	"EyeLike": true, "RandomNormalLike": true, "RandomUniformLike": true,
}

// markActive finds the tensors that carry a gradient: float tensors that
// depend on a wrt tensor and that some seed depends on, not through a stop.
func (d *differ) markActive() {
	fromWrt := map[string]bool{}
	for t := range d.wrt {
		if d.isFloat(t) {
			fromWrt[t] = true
		}
	}
	for _, i := range d.order {
		n := d.nodes[i]
		if zeroGradOps[n.GetOpType()] {
			continue
		}
		hit := false
		for _, in := range nodeInputs(n) {
			if fromWrt[in] {
				hit = true
				break
			}
		}
		if !hit {
			continue
		}
		for _, o := range n.GetOutput() {
			if o != "" && d.isFloat(o) && !d.stop[o] {
				fromWrt[o] = true
			}
		}
	}
	toSeed := map[string]bool{}
	for t := range d.seed {
		toSeed[t] = true
	}
	for k := len(d.order) - 1; k >= 0; k-- {
		n := d.nodes[d.order[k]]
		if zeroGradOps[n.GetOpType()] {
			continue
		}
		hit := false
		for _, o := range n.GetOutput() {
			if toSeed[o] && !d.stop[o] {
				hit = true
			}
		}
		if hit {
			for _, in := range nodeInputs(n) {
				toSeed[in] = true
			}
		}
	}
	d.active = map[string]bool{}
	for t := range fromWrt {
		if toSeed[t] {
			d.active[t] = true
		}
	}
}

// sweep runs the VJP rules over the active nodes in reverse order.
func (d *differ) sweep() error {
	for k := len(d.order) - 1; k >= 0; k-- {
		i := d.order[k]
		n := d.nodes[i]
		if zeroGradOps[n.GetOpType()] {
			continue
		}
		gy := make([]string, len(n.GetOutput()))
		any := false
		for j, o := range n.GetOutput() {
			if o == "" || !d.active[o] || d.stop[o] {
				continue
			}
			gy[j] = d.finalGrad(o)
			if gy[j] != "" {
				any = true
			}
		}
		if !any {
			continue
		}
		want := make([]bool, len(n.GetInput()))
		wantAny := false
		for j, in := range n.GetInput() {
			if in != "" && d.active[in] {
				want[j] = true
				wantAny = true
			}
		}
		if !wantAny {
			continue
		}
		rule, ok := vjpRules[n.GetOpType()]
		if !ok || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") {
			return fmt.Errorf("%w %s (node %s)", ErrNoVJP, n.GetOpType(), n.GetName())
		}
		v := &vjp{d: d, n: n, idx: i, gy: gy, want: want}
		v.elem = d.types[n.GetOutput()[0]]
		gx, err := rule(v)
		if err != nil {
			return fmt.Errorf("gradient of %s node %s: %w", n.GetOpType(), n.GetName(), err)
		}
		for j, in := range n.GetInput() {
			if j < len(gx) && gx[j] != "" && want[j] {
				d.contrib[in] = append(d.contrib[in], gx[j])
			}
		}
	}
	return nil
}

// finalGrad sums the gradient contributions of t (and its seed) once all
// of t's consumers are done; "" when nothing reaches t.
func (d *differ) finalGrad(t string) string {
	if g, ok := d.final[t]; ok {
		return g
	}
	parts := append([]string(nil), d.contrib[t]...)
	if d.seed[t] {
		parts = append([]string{SeedName(t)}, parts...)
	}
	// A chain of binary Adds: ONNX Runtime's Add is faster than its Sum.
	var g string
	switch {
	case len(parts) == 0:
	case d.wrt[t] && len(parts) == 1:
		g = d.b.Op("Identity", GradName(t), parts)
	case len(parts) == 1:
		g = parts[0]
	default:
		g = parts[0]
		for i, p := range parts[1:] {
			name := ""
			if i == len(parts)-2 && d.wrt[t] {
				name = GradName(t)
			}
			g = d.b.Op("Add", name, []string{g, p})
		}
	}
	d.final[t] = g
	return g
}

// assemble builds the backward model: recomputation nodes in forward order,
// then the gradient nodes.
func (d *differ) assemble(spec GradSpec) (*Gradient, error) {
	res := &Gradient{}
	var outs []string
	for _, w := range spec.Wrt {
		if g := d.finalGrad(w); g != "" {
			outs = append(outs, w)
		} else {
			res.Zero = append(res.Zero, w)
		}
	}
	seen := map[string]bool{}
	for _, t := range d.need {
		if err := d.resolve(t, seen); err != nil {
			return nil, err
		}
	}
	g := &onnxpb.GraphProto{Name: proto.String(d.m.GetGraph().GetName() + ".backward")}
	fg := d.m.GetGraph()
	// Inputs: the seeds that feed something, then forward values.
	bwdNodes := elideIdentities(d.b.Graph().GetNode())
	read := map[string]bool{}
	for _, n := range bwdNodes {
		for _, in := range n.GetInput() {
			read[in] = true
		}
	}
	for _, s := range spec.Seeds {
		if !read[SeedName(s)] {
			continue
		}
		res.Seeds = append(res.Seeds, SeedName(s))
		g.Input = append(g.Input, d.valueInfo(SeedName(s), s))
	}
	var fwdIn []string
	for t := range d.used {
		fwdIn = append(fwdIn, t)
	}
	sort.Strings(fwdIn)
	for _, t := range fwdIn {
		res.Forward = append(res.Forward, t)
		g.Input = append(g.Input, d.valueInfo(t, t))
	}
	var inits []string
	for t := range d.initUsed {
		inits = append(inits, t)
	}
	for _, n := range bwdNodes {
		for _, in := range n.GetInput() {
			if d.inits[in] != nil && !d.initUsed[in] {
				d.initUsed[in] = true
				inits = append(inits, in)
			}
		}
	}
	sort.Strings(inits)
	for _, t := range inits {
		g.Initializer = append(g.Initializer, d.inits[t])
	}
	g.Initializer = append(g.Initializer, d.b.Graph().GetInitializer()...)
	// Nodes: recomputation in forward order, inverses, then the gradient.
	for _, i := range d.order {
		if !d.fwdNodes[i] {
			continue
		}
		n := proto.Clone(d.nodes[i]).(*onnxpb.NodeProto)
		if base, ok := d.renamed[i]; ok {
			for j, o := range n.Output {
				if o == base {
					n.Output[j] = base + computedSuffix
				}
			}
			// The tensor itself may also be needed (read by a consumer's
			// recomputation): it then comes from the saved value.
		}
		g.Node = append(g.Node, n)
	}
	g.Node = append(g.Node, d.inverse...)
	g.Node = append(g.Node, bwdNodes...)
	// Value infos of forward tensors recomputed here and of the gradients.
	vi := map[string]bool{}
	for _, v := range fg.GetValueInfo() {
		if d.recomputed(v.GetName()) && !vi[v.GetName()] {
			vi[v.GetName()] = true
			g.ValueInfo = append(g.ValueInfo, v)
		}
	}
	for _, w := range outs {
		res.Outputs = append(res.Outputs, GradName(w))
		g.Output = append(g.Output, d.valueInfo(GradName(w), w))
	}
	for _, w := range spec.Wrt {
		if _, ok := d.final[w]; ok && !vi[GradName(w)] {
			vi[GradName(w)] = true
		}
	}
	res.Model = &onnxpb.ModelProto{
		IrVersion:    proto.Int64(d.m.GetIrVersion()),
		ProducerName: proto.String("onnx-tdb"),
		OpsetImport:  d.m.GetOpsetImport(),
		Graph:        g,
	}
	return res, nil
}

func (d *differ) recomputed(t string) bool {
	p, ok := d.producer[t]
	return ok && d.fwdNodes[p]
}

// valueInfo describes name with the type and static shape of forward tensor t.
func (d *differ) valueInfo(name, t string) *onnxpb.ValueInfoProto {
	tt := &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(d.types[t]))}
	if sh, ok := d.shapes[t]; ok {
		tt.Shape = &onnxpb.TensorShapeProto{}
		for _, dm := range sh {
			dim := &onnxpb.TensorShapeProto_Dimension{}
			switch {
			case dm.known():
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: dm.N}
			case !strings.HasPrefix(dm.Sym, "?"):
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: dm.Sym}
			}
			tt.Shape.Dim = append(tt.Shape.Dim, dim)
		}
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}}}
}

// elideIdentities drops Identity(c) -> out where c is made by another
// backward node, read by nothing else and not itself an output: that node
// writes out directly (saves a copy per gradient output).
func elideIdentities(nodes []*onnxpb.NodeProto) []*onnxpb.NodeProto {
	producer := map[string]*onnxpb.NodeProto{}
	reads := map[string]int{}
	for _, n := range nodes {
		for _, o := range n.GetOutput() {
			producer[o] = n
		}
		for _, in := range n.GetInput() {
			reads[in]++
		}
	}
	drop := map[*onnxpb.NodeProto]bool{}
	for _, n := range nodes {
		if n.GetOpType() != "Identity" || len(n.GetInput()) != 1 {
			continue
		}
		c := n.GetInput()[0]
		p, ok := producer[c]
		if !ok || reads[c] != 1 || drop[p] || strings.HasPrefix(c, gradPrefix) {
			continue
		}
		for j, o := range p.Output {
			if o == c {
				p.Output[j] = n.GetOutput()[0]
			}
		}
		drop[n] = true
	}
	out := nodes[:0:0]
	for _, n := range nodes {
		if !drop[n] {
			out = append(out, n)
		}
	}
	return out
}
