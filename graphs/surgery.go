package graphs

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Errors of graph surgery.
var (
	ErrNoTensor = errors.New("tensor not computed by the graph")
	ErrCutOrder = errors.New("cut points are not in an order the graph can run")
	ErrCycle    = errors.New("graph has a cycle")
)

// Merge joins stage graphs linked by tensor name into one model: a stage's
// input that an earlier stage computes becomes an internal tensor. Every
// stage output stays a graph output.
func Merge(stages []*onnxpb.ModelProto) (*onnxpb.ModelProto, error) {
	if len(stages) == 0 {
		return nil, errors.New("merge: no stages")
	}
	g := &onnxpb.GraphProto{Name: proto.String("model")}
	produced := map[string]bool{}
	declared := map[string]bool{}
	inits := map[string]*onnxpb.TensorProto{}
	vinfo := map[string]bool{}
	opsets := map[string]int64{}
	var ir int64
	for _, m := range stages {
		if m.GetIrVersion() > ir {
			ir = m.GetIrVersion()
		}
		for _, o := range m.GetOpsetImport() {
			if o.GetVersion() > opsets[o.GetDomain()] {
				opsets[o.GetDomain()] = o.GetVersion()
			}
		}
		sg := m.GetGraph()
		for _, in := range sg.GetInput() {
			if _, isInit := inits[in.GetName()]; produced[in.GetName()] || declared[in.GetName()] || isInit {
				continue
			}
			declared[in.GetName()] = true
			g.Input = append(g.Input, in)
		}
		for _, t := range sg.GetInitializer() {
			if prev, dup := inits[t.GetName()]; dup {
				if fmt.Sprint(prev.GetDims()) != fmt.Sprint(t.GetDims()) {
					return nil, fmt.Errorf("merge: initializer %s declared with dims %v and %v", t.GetName(), prev.GetDims(), t.GetDims())
				}
				continue
			}
			inits[t.GetName()] = t
			g.Initializer = append(g.Initializer, t)
		}
		for _, n := range sg.GetNode() {
			for _, o := range n.GetOutput() {
				if o == "" {
					continue
				}
				if produced[o] {
					return nil, fmt.Errorf("merge: tensor %s computed twice", o)
				}
				produced[o] = true
			}
			g.Node = append(g.Node, n)
		}
		for _, v := range append(append([]*onnxpb.ValueInfoProto{}, sg.GetValueInfo()...), sg.GetOutput()...) {
			if !vinfo[v.GetName()] {
				vinfo[v.GetName()] = true
				g.ValueInfo = append(g.ValueInfo, v)
			}
		}
		g.Output = append(g.Output, sg.GetOutput()...)
	}
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(ir), ProducerName: proto.String("onnx-tdb"), Graph: g}
	doms := make([]string, 0, len(opsets))
	for d := range opsets {
		doms = append(doms, d)
	}
	sort.Strings(doms)
	for _, d := range doms {
		m.OpsetImport = append(m.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String(d), Version: proto.Int64(opsets[d])})
	}
	return m, nil
}

// Rewire makes the node that computes with compute replace instead: the
// node that computed replace is dropped and with is renamed to replace.
// This is how a switch takes effect (the explicit softmax).
func Rewire(m *onnxpb.ModelProto, replace, with string) error {
	g := m.GetGraph()
	drop, found := -1, false
	for i, n := range g.GetNode() {
		for j, o := range n.GetOutput() {
			if o == replace {
				drop = i
			}
			if o == with {
				found = true
				n.Output[j] = replace
			}
		}
	}
	if drop < 0 || !found {
		return fmt.Errorf("rewire %s -> %s: %w", with, replace, ErrNoTensor)
	}
	g.Node = append(g.Node[:drop:drop], g.Node[drop+1:]...)
	for _, n := range g.GetNode() {
		for j, in := range n.GetInput() {
			if in == with {
				n.Input[j] = replace
			}
		}
	}
	return nil
}

// Spec says how to cut a model.
type Spec struct {
	Outputs []string // model outputs the caller wants
	Reads   []string // tensors exposed as extra outputs, no cut
	Cuts    []string // tensors where Go takes over, in call order
}

// Segment is one part of a cut model: it runs after the segments before it,
// reading graph inputs, earlier segments' outputs and hooked cut tensors.
type Segment struct {
	Model   *onnxpb.ModelProto
	Inputs  []string
	Outputs []string
	// Fetch are the graph's names of Outputs, in the same order: a read
	// tensor that nodes of the segment also consume, made by the last node
	// of a primitive norm or activation (endsFusedPattern), is exposed
	// through an Identity under ReadName(tensor), so that the tensor itself
	// is no graph output and ONNX Runtime still fuses the pattern (a GELU
	// whose output is read stays FastGelu).
	Fetch []string
	Level int // cut index: segment Level runs after the hooks of Cuts[Level-1]
}

// ReadName is the graph output name of a read tensor exposed through an
// Identity (Segment.Fetch).
func ReadName(tensor string) string { return tensor + "#read" }

// nodeInputs lists the tensors a node reads, including the outer-scope names
// its subgraphs (If/Loop/Scan bodies) refer to.
func nodeInputs(n *onnxpb.NodeProto) []string {
	var ins []string
	for _, in := range n.GetInput() {
		if in != "" {
			ins = append(ins, in)
		}
	}
	for _, a := range n.GetAttribute() {
		for _, sg := range append([]*onnxpb.GraphProto{a.GetG()}, a.GetGraphs()...) {
			if sg != nil {
				ins = append(ins, outerRefs(sg)...)
			}
		}
	}
	return ins
}

func outerRefs(g *onnxpb.GraphProto) []string {
	local := map[string]bool{}
	for _, in := range g.GetInput() {
		local[in.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		local[t.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			local[o] = true
		}
	}
	var refs []string
	seen := map[string]bool{}
	for _, n := range g.GetNode() {
		for _, in := range nodeInputs(n) {
			if !local[in] && !seen[in] {
				seen[in] = true
				refs = append(refs, in)
			}
		}
	}
	return refs
}

// TopoOrder returns the node indices of g in an order where every node comes
// after the producers of its inputs (stable for graphs already in order).
func TopoOrder(g *onnxpb.GraphProto) ([]int, error) {
	nodes := g.GetNode()
	producer := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.GetOutput() {
			if o != "" {
				producer[o] = i
			}
		}
	}
	indeg := make([]int, len(nodes))
	users := make([][]int, len(nodes))
	for i, n := range nodes {
		seen := map[int]bool{}
		for _, in := range nodeInputs(n) {
			if p, ok := producer[in]; ok && p != i && !seen[p] {
				seen[p] = true
				indeg[i]++
				users[p] = append(users[p], i)
			}
		}
	}
	var order, ready []int
	for i := range nodes {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	for len(ready) > 0 {
		sort.Ints(ready)
		i := ready[0]
		ready = ready[1:]
		order = append(order, i)
		for _, u := range users[i] {
			if indeg[u]--; indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if len(order) != len(nodes) {
		return nil, ErrCycle
	}
	return order, nil
}

// Split cuts a model into segments: the nodes needed for the outputs, reads
// and cuts, each placed in the earliest segment after every cut tensor it
// depends on. Unneeded nodes are dropped; a model with no cuts gives one
// segment.
func Split(m *onnxpb.ModelProto, spec Spec) ([]*Segment, error) {
	g := m.GetGraph()
	nodes := g.GetNode()
	order, err := TopoOrder(g)
	if err != nil {
		return nil, err
	}
	producer := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.GetOutput() {
			if o != "" {
				producer[o] = i
			}
		}
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	graphInputs := map[string]bool{}
	for _, in := range g.GetInput() {
		graphInputs[in.GetName()] = true
	}
	cutIdx := map[string]int{}
	for j, c := range spec.Cuts {
		if _, ok := producer[c]; !ok {
			return nil, fmt.Errorf("cut at %s: %w", c, ErrNoTensor)
		}
		if _, dup := cutIdx[c]; dup {
			return nil, fmt.Errorf("cut at %s listed twice", c)
		}
		cutIdx[c] = j + 1
	}
	wanted := map[string]bool{}
	var targets []string
	for _, list := range [][]string{spec.Outputs, spec.Reads, spec.Cuts} {
		for _, t := range list {
			if _, ok := producer[t]; !ok && !graphInputs[t] {
				return nil, fmt.Errorf("tensor %s: %w", t, ErrNoTensor)
			}
			if !wanted[t] {
				wanted[t] = true
				targets = append(targets, t)
			}
		}
	}

	// Nodes needed for the targets.
	needed := make([]bool, len(nodes))
	stack := append([]string(nil), targets...)
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		p, ok := producer[t]
		if !ok || needed[p] {
			continue
		}
		needed[p] = true
		stack = append(stack, nodeInputs(nodes[p])...)
	}

	// Levels: a node runs after every cut it reads, directly or not.
	level := make([]int, len(nodes))
	levelOf := func(t string) int {
		if j, ok := cutIdx[t]; ok {
			return j
		}
		if p, ok := producer[t]; ok {
			return level[p]
		}
		return 0
	}
	maxLevel := len(spec.Cuts)
	for _, i := range order {
		if !needed[i] {
			continue
		}
		for _, in := range nodeInputs(nodes[i]) {
			if l := levelOf(in); l > level[i] {
				level[i] = l
			}
		}
	}
	for c, j := range cutIdx {
		if l := level[producer[c]]; l >= j {
			return nil, fmt.Errorf("%w: %s depends on a cut listed after it", ErrCutOrder, c)
		}
	}

	// Scalars never cross segments (onnxruntime_go cannot hold a rank-0
	// tensor): a segment recomputes each scalar it reads from an earlier
	// one, with the scalars that one depends on.
	recompute := scalarRecompute(m, nodes, order, needed, level, producer, wanted, cutIdx, maxLevel)

	// Which tensors later segments read.
	lastUse := map[string]int{}
	use := func(i, s int) {
		for _, in := range nodeInputs(nodes[i]) {
			if q, ok := producer[in]; ok && recompute[s][q] {
				continue
			}
			if s > lastUse[in] {
				lastUse[in] = s
			}
		}
	}
	for _, i := range order {
		if needed[i] {
			use(i, level[i])
		}
	}
	for s, set := range recompute {
		for i := range set {
			use(i, s)
		}
	}
	types := InferTypes(m)
	shapes := shapeIndex(g)
	readSet := map[string]bool{}
	for _, r := range spec.Reads {
		if _, cut := cutIdx[r]; !cut && !slices.Contains(spec.Outputs, r) {
			readSet[r] = true
		}
	}
	var segs []*Segment
	for s := 0; s <= maxLevel; s++ {
		seg := &onnxpb.GraphProto{Name: proto.String(fmt.Sprintf("%s.seg%d", g.GetName(), s))}
		produced := map[string]bool{}
		inSet := map[string]bool{}
		initSet := map[string]bool{}
		var ins, outs []string
		for _, i := range order {
			if !(needed[i] && level[i] == s) && !recompute[s][i] {
				continue
			}
			n := nodes[i]
			for _, in := range nodeInputs(n) {
				switch {
				case produced[in]:
				case inits[in] != nil && !isProduced(producer, in):
					if !initSet[in] {
						initSet[in] = true
						seg.Initializer = append(seg.Initializer, inits[in])
					}
				default:
					if !inSet[in] {
						inSet[in] = true
						ins = append(ins, in)
					}
				}
			}
			seg.Node = append(seg.Node, n)
			for _, o := range n.GetOutput() {
				if o != "" {
					produced[o] = true
				}
			}
		}
		if len(seg.Node) == 0 {
			continue
		}
		for _, i := range order {
			if !needed[i] || level[i] != s {
				continue
			}
			for _, o := range nodes[i].GetOutput() {
				if o != "" && (wanted[o] || lastUse[o] > s) {
					outs = append(outs, o)
				}
			}
		}
		for _, in := range ins {
			vi, err := typedInfo(in, types, shapes)
			if err != nil {
				return nil, err
			}
			seg.Input = append(seg.Input, vi)
		}
		uses := map[string]int{}
		producer := map[string]*onnxpb.NodeProto{}
		for _, n := range seg.Node {
			for _, o := range n.GetOutput() {
				producer[o] = n
			}
		}
		for _, n := range seg.Node {
			for _, in := range nodeInputs(n) {
				uses[in]++
			}
		}
		fetch := make([]string, len(outs))
		var reads []*onnxpb.NodeProto
		for j, o := range outs {
			vi, err := typedInfo(o, types, shapes)
			if err != nil {
				return nil, err
			}
			fetch[j] = o
			if readSet[o] && uses[o] > 0 && endsFusedPattern(producer[o], producer, uses, readSet) {
				fetch[j] = ReadName(o)
				reads = append(reads, &onnxpb.NodeProto{OpType: proto.String("Identity"),
					Name: proto.String(ReadName(o)), Input: []string{o}, Output: []string{fetch[j]}})
				vi = proto.Clone(vi).(*onnxpb.ValueInfoProto)
				vi.Name = proto.String(fetch[j])
			}
			seg.Output = append(seg.Output, vi)
		}
		// The Identity nodes go last, the latest read first. ONNX Runtime
		// orders nodes by a depth-first walk back from the graph's leaves,
		// starting at the leaf added last; the Identities are leaves, so
		// the earliest read's is reached first and runs as soon as its
		// tensor is made, then the next one's, and so on (leaves ONNX
		// Runtime adds itself, such as rewritten Transposes, still come
		// first). In the order they were made in, every one of them ran
		// after the segment's last layer: each read tensor was alive to the
		// end of the segment, and the memory pattern ONNX Runtime keeps for
		// the shape held all of them at once (GPT-2 small, every point read
		// at 1x128: 113 MB, 55 MB in this order).
		slices.Reverse(reads)
		seg.Node = append(seg.Node, reads...)
		segs = append(segs, &Segment{
			Model: &onnxpb.ModelProto{
				IrVersion:    proto.Int64(m.GetIrVersion()),
				ProducerName: proto.String("onnx-tdb"),
				OpsetImport:  m.GetOpsetImport(),
				Graph:        seg,
			},
			Inputs:  ins,
			Outputs: outs,
			Fetch:   fetch,
			Level:   s,
		})
	}
	return segs, nil
}

// scalarRecompute lists, per segment, the nodes of earlier segments that
// it runs again because they compute a scalar (rank 0, by InferShapes) it
// reads. Hooked, cut and requested tensors are never recomputed.
func scalarRecompute(m *onnxpb.ModelProto, nodes []*onnxpb.NodeProto, order []int, needed []bool, level []int,
	producer map[string]int, wanted map[string]bool, cutIdx map[string]int, maxLevel int) []map[int]bool {
	recompute := make([]map[int]bool, maxLevel+1)
	for s := range recompute {
		recompute[s] = map[int]bool{}
	}
	if maxLevel == 0 {
		return recompute
	}
	shapes := InferShapes(m)
	earlierScalar := func(t string, s int) (int, bool) {
		q, ok := producer[t]
		if !ok || wanted[t] || cutIdx[t] != 0 || level[q] >= s {
			return 0, false
		}
		sh, known := shapes[t]
		return q, known && len(sh) == 0
	}
	var add func(s, p int)
	add = func(s, p int) {
		if recompute[s][p] {
			return
		}
		recompute[s][p] = true
		for _, in := range nodeInputs(nodes[p]) {
			if q, ok := earlierScalar(in, s); ok {
				add(s, q)
			}
		}
	}
	for _, i := range order {
		if !needed[i] {
			continue
		}
		for _, in := range nodeInputs(nodes[i]) {
			if q, ok := earlierScalar(in, level[i]); ok {
				add(level[i], q)
			}
		}
	}
	return recompute
}

func isProduced(producer map[string]int, t string) bool {
	_, ok := producer[t]
	return ok
}

func shapeIndex(g *onnxpb.GraphProto) map[string]*onnxpb.ValueInfoProto {
	m := map[string]*onnxpb.ValueInfoProto{}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetInput(), g.GetValueInfo(), g.GetOutput()} {
		for _, v := range list {
			if _, ok := m[v.GetName()]; !ok {
				m[v.GetName()] = v
			}
		}
	}
	return m
}

// typedInfo describes a segment input or output: the recorded value info
// when the graph has one, else the inferred element type with no shape.
func typedInfo(name string, types map[string]onnxpb.TensorProto_DataType, shapes map[string]*onnxpb.ValueInfoProto) (*onnxpb.ValueInfoProto, error) {
	if v, ok := shapes[name]; ok && v.GetType().GetTensorType().GetElemType() != 0 {
		return v, nil
	}
	t, ok := types[name]
	if !ok || t == onnxpb.TensorProto_UNDEFINED {
		return nil, fmt.Errorf("element type of %s is unknown", name)
	}
	return ValueInfo(name, t), nil
}
