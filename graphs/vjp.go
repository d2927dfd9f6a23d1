package graphs

import (
	"fmt"
	"sort"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// vjp is the context of one rule: a forward node, the gradients of its
// outputs, and which inputs need a gradient.
type vjp struct {
	d    *differ
	n    *onnxpb.NodeProto
	idx  int
	gy   []string
	want []bool
	elem onnxpb.TensorProto_DataType
}

// A vjpRule returns the gradient of each input ("" for none).
type vjpRule func(v *vjp) ([]string, error)

// vjpRules maps operator types to their vector-Jacobian products.
var vjpRules map[string]vjpRule

func init() {
	vjpRules = map[string]vjpRule{
		"Identity": vjpIdentity, "Dropout": vjpIdentity,
		"Cast":      vjpCast,
		"Neg":       vjpNeg,
		"Add":       vjpAdd,
		"Sub":       vjpSub,
		"Sum":       vjpSum,
		"Mul":       vjpMul,
		"Div":       vjpDiv,
		"Pow":       vjpPow,
		"Sqrt":      vjpSqrt,
		"Exp":       vjpExp,
		"Log":       vjpLog,
		"Tanh":      vjpTanh,
		"Sigmoid":   vjpSigmoid,
		"Relu":      vjpRelu,
		"Max":       vjpMaxMin(true),
		"Min":       vjpMaxMin(false),
		"Where":     vjpWhere,
		"Softmax":   vjpSoftmax,
		"ReduceSum": vjpReduce(false), "ReduceMean": vjpReduce(true),
		"MatMul":          vjpMatMul,
		"Gemm":            vjpGemm,
		"Transpose":       vjpTranspose,
		"Reshape":         vjpReshape,
		"Squeeze":         vjpSqueeze,
		"Unsqueeze":       vjpUnsqueeze,
		"Concat":          vjpConcat,
		"Expand":          vjpExpand,
		"TopK":            vjpTopK,
		"ScatterElements": vjpScatterElements,
		"GatherElements":  vjpGatherElements,
		"Cos":             vjpCos,
		"Sin":             vjpSin,
		"Slice":           vjpSlice,
		"Einsum":          vjpEinsum,
	}
}

// --- helpers ---------------------------------------------------------------

func (v *vjp) in(i int) string  { return v.n.GetInput()[i] }
func (v *vjp) out(i int) string { return v.n.GetOutput()[i] }

// fwd references a forward value the rule reads.
func (v *vjp) fwd(t string) string { return v.d.needFwd(t) }

// fwdOut references the node's own output j as the node computed it (a
// hook may have replaced the saved value).
func (v *vjp) fwdOut(j int) string {
	o := v.out(j)
	if v.d.replaced[o] {
		return v.d.needFwd(o + computedSuffix)
	}
	return v.d.needFwd(o)
}

func (v *vjp) shape(t string) (Shape, error) {
	if base, ok := cutComputed(t); ok {
		t = base
	}
	sh, ok := v.d.shapes[t]
	if !ok {
		return nil, fmt.Errorf("%w: rank of %s unknown", ErrGrad, t)
	}
	return sh, nil
}

func cutComputed(t string) (string, bool) {
	if len(t) > len(computedSuffix) && t[len(t)-len(computedSuffix):] == computedSuffix {
		return t[:len(t)-len(computedSuffix)], true
	}
	return t, false
}

func (v *vjp) op(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return v.d.b.Op(op, "", inputs, attrs...)
}

func (v *vjp) attrInt(name string, def int64) int64 {
	if a := attr(v.n, name); a != nil {
		return a.GetI()
	}
	return def
}

// scalar is a constant of the node's float type.
func (v *vjp) scalar(x float64) string {
	return v.d.scalar(v.elem, x)
}

func (d *differ) scalar(elem onnxpb.TensorProto_DataType, x float64) string {
	key := fmt.Sprintf("%d:%v", elem, x)
	if name, ok := d.consts[key]; ok {
		return name
	}
	name := fmt.Sprintf("bwd/const_%d", len(d.consts))
	t := &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(elem))}
	switch elem {
	case onnxpb.TensorProto_DOUBLE:
		t.DoubleData = []float64{x}
	default:
		t.DataType = proto.Int32(int32(Float))
		t.FloatData = []float32{float32(x)}
	}
	d.b.g.Initializer = append(d.b.g.Initializer, t)
	d.consts[key] = name
	return name
}

// ints is a 1-D int64 constant.
func (v *vjp) ints(vals ...int64) string {
	key := fmt.Sprintf("i:%v", vals)
	if name, ok := v.d.consts[key]; ok {
		return name
	}
	name := v.d.b.ConstI64(fmt.Sprintf("bwd/ints_%d", len(v.d.consts)), []int64{int64(len(vals))}, vals...)
	v.d.consts[key] = name
	return name
}

func (v *vjp) zero() string { return v.scalar(0) }

// unbroadcast sums g (of shape gsh) down to shape tsh: over leading axes tsh
// lacks and over axes where tsh has size 1 and g does not.
func (v *vjp) unbroadcast(g string, gsh, tsh Shape) (string, error) {
	lead := len(gsh) - len(tsh)
	if lead < 0 {
		return "", fmt.Errorf("%w: gradient of rank %d for a tensor of rank %d", ErrGrad, len(gsh), len(tsh))
	}
	var axes, leading []int64
	for i := 0; i < lead; i++ {
		axes = append(axes, int64(i))
		leading = append(leading, int64(i))
	}
	for j, dm := range tsh {
		if dm.isOne() && !gsh[lead+j].isOne() {
			axes = append(axes, int64(lead+j))
		}
	}
	if len(axes) == 0 {
		return g, nil
	}
	r := v.op("ReduceSum", []string{g, v.ints(axes...)}, AttrInt("keepdims", 1))
	if lead > 0 {
		r = v.op("Squeeze", []string{r, v.ints(leading...)})
	}
	return r, nil
}

// unbroadcastIn reduces a gradient shaped like output 0 to input i's shape.
func (v *vjp) unbroadcastIn(g string, i int) (string, error) {
	ysh, err := v.shape(v.out(0))
	if err != nil {
		return "", err
	}
	xsh, err := v.shape(v.in(i))
	if err != nil {
		return "", err
	}
	return v.unbroadcast(g, ysh, xsh)
}

// shapeOf gives x's shape as a 1-D int64 tensor: a constant when known, else
// Shape of the forward value.
func (v *vjp) shapeOf(x string) string {
	if sh, ok := v.d.shapes[x]; ok && sh.Known() {
		return v.ints(sh.Ints()...)
	}
	return v.op("Shape", []string{v.fwd(x)})
}

// reshapeTarget gives a Reshape shape turning g (of static shape gsh) into
// x's shape: a constant whose symbolic sizes copy g's axis of the same size
// (Reshape's 0) or are inferred (-1, once), else Shape of the forward value.
func (v *vjp) reshapeTarget(x string, gsh Shape) string {
	if xs, ok := v.d.shapes[x]; ok {
		vals := make([]int64, len(xs))
		free := 0
		okConst := true
		for i, dm := range xs {
			switch {
			case dm.known() && dm.N > 0:
				vals[i] = dm.N
			case dm.known():
				okConst = false
			case i < len(gsh) && gsh[i].same(dm):
				vals[i] = 0
			default:
				vals[i] = -1
				free++
			}
		}
		if okConst && free <= 1 {
			return v.ints(vals...)
		}
	}
	return v.op("Shape", []string{v.fwd(x)})
}

// zerosLike is a zero tensor of x's shape.
func (v *vjp) zerosLike(x string) string {
	return v.op("Expand", []string{v.zero(), v.shapeOf(x)})
}

// transposeLast2 swaps the last two axes of a forward tensor of the given
// rank.
func (v *vjp) transposeLast2(t string, rank int) string {
	perm := make([]int64, rank)
	for i := range perm {
		perm[i] = int64(i)
	}
	perm[rank-2], perm[rank-1] = perm[rank-1], perm[rank-2]
	return v.transposeFwd(t, perm)
}

func isIdentityPerm(p []int64) bool {
	for i, x := range p {
		if x != int64(i) {
			return false
		}
	}
	return true
}

// compose is the permutation of Transpose(Transpose(x, p1), p2).
func compose(p1, p2 []int64) []int64 {
	c := make([]int64, len(p2))
	for i, j := range p2 {
		c[i] = p1[j]
	}
	return c
}

// transposeFwd transposes a forward value, folding it into the transposes
// that computed it: Transpose(Transpose(y, p1), p2) reads y once.
func (v *vjp) transposeFwd(x string, perm []int64) string {
	d := v.d
	for !(d.saved[x] || d.inputs[x] || d.inits[x] != nil) {
		p, ok := d.producer[x]
		if !ok {
			break
		}
		n := d.nodes[p]
		if n.GetOpType() != "Transpose" || len(n.GetInput()) != 1 {
			break
		}
		sh, ok := d.shapes[n.GetInput()[0]]
		if !ok || len(sh) != len(perm) {
			break
		}
		p1 := make([]int64, len(perm))
		for i, q := range permOf(n, len(sh)) {
			p1[i] = int64(q)
		}
		perm = compose(p1, perm)
		x = n.GetInput()[0]
	}
	if isIdentityPerm(perm) {
		return v.fwd(x)
	}
	return v.op("Transpose", []string{v.fwd(x)}, AttrInts("perm", perm...))
}

// transposeGrad transposes a backward tensor, folding consecutive
// transposes the backward graph made.
func (v *vjp) transposeGrad(g string, perm []int64) string {
	if t, ok := v.d.bwdT[g]; ok {
		perm = compose(t.perm, perm)
		g = t.in
	}
	if isIdentityPerm(perm) {
		return g
	}
	out := v.op("Transpose", []string{g}, AttrInts("perm", perm...))
	v.d.bwdT[out] = bwdTranspose{in: g, perm: perm}
	return out
}

func (v *vjp) isConst(t string) bool { return v.d.inits[t] != nil }

// DifferentiableOps lists the operators that have a gradient rule, sorted.
func DifferentiableOps() []string {
	ops := make([]string, 0, len(vjpRules))
	for op := range vjpRules {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}
