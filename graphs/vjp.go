package graphs

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"

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

// --- rules -------------------------------------------------------------------

func vjpIdentity(v *vjp) ([]string, error) { return []string{v.gy[0]}, nil }

func vjpCast(v *vjp) ([]string, error) {
	from := v.d.types[v.in(0)]
	if from == v.d.types[v.out(0)] {
		return []string{v.gy[0]}, nil
	}
	return []string{v.op("Cast", []string{v.gy[0]}, AttrInt("to", int64(from)))}, nil
}

func vjpNeg(v *vjp) ([]string, error) { return []string{v.op("Neg", []string{v.gy[0]})}, nil }

func vjpAdd(v *vjp) ([]string, error) {
	out := make([]string, 2)
	for i := 0; i < 2; i++ {
		if !v.want[i] {
			continue
		}
		g, err := v.unbroadcastIn(v.gy[0], i)
		if err != nil {
			return nil, err
		}
		out[i] = g
	}
	return out, nil
}

func vjpSum(v *vjp) ([]string, error) {
	out := make([]string, len(v.n.GetInput()))
	for i := range out {
		if !v.want[i] {
			continue
		}
		g, err := v.unbroadcastIn(v.gy[0], i)
		if err != nil {
			return nil, err
		}
		out[i] = g
	}
	return out, nil
}

func vjpSub(v *vjp) ([]string, error) {
	out := make([]string, 2)
	var err error
	if v.want[0] {
		if out[0], err = v.unbroadcastIn(v.gy[0], 0); err != nil {
			return nil, err
		}
	}
	if v.want[1] {
		if out[1], err = v.unbroadcastIn(v.op("Neg", []string{v.gy[0]}), 1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func vjpMul(v *vjp) ([]string, error) {
	out := make([]string, 2)
	for i := 0; i < 2; i++ {
		if !v.want[i] {
			continue
		}
		other := v.in(1 - i)
		if !v.isConst(other) {
			other = v.fwd(other)
		}
		g, err := v.unbroadcastIn(v.op("Mul", []string{v.gy[0], other}), i)
		if err != nil {
			return nil, err
		}
		out[i] = g
	}
	return out, nil
}

func vjpDiv(v *vjp) ([]string, error) {
	out := make([]string, 2)
	b := v.in(1)
	if !v.isConst(b) {
		b = v.fwd(b)
	}
	var err error
	if v.want[0] {
		if out[0], err = v.unbroadcastIn(v.op("Div", []string{v.gy[0], b}), 0); err != nil {
			return nil, err
		}
	}
	if v.want[1] {
		// d(a/b)/db = -(a/b)/b
		gy := v.op("Neg", []string{v.op("Div", []string{v.op("Mul", []string{v.gy[0], v.fwdOut(0)}), b})})
		if out[1], err = v.unbroadcastIn(gy, 1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// constScalar returns the value of a scalar (or one-element) constant.
func (v *vjp) constScalar(t string) (float64, bool) {
	c := v.d.constVals[t]
	if c == nil {
		return 0, false
	}
	raw := c.GetRawData()
	switch {
	case len(c.GetFloatData()) == 1:
		return float64(c.GetFloatData()[0]), true
	case len(c.GetDoubleData()) == 1:
		return c.GetDoubleData()[0], true
	case c.GetDataType() == int32(Float) && len(raw) == 4:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(raw))), true
	case c.GetDataType() == int32(onnxpb.TensorProto_DOUBLE) && len(raw) == 8:
		return math.Float64frombits(binary.LittleEndian.Uint64(raw)), true
	}
	return 0, false
}

func vjpPow(v *vjp) ([]string, error) {
	out := make([]string, 2)
	a := v.in(0)
	var err error
	if v.want[0] {
		var d string // d(a^e)/da
		if e, ok := v.constScalar(v.in(1)); ok {
			switch e {
			case 1:
				d = ""
			case 2:
				d = v.op("Mul", []string{v.fwd(a), v.scalar(2)})
			default:
				d = v.op("Mul", []string{v.op("Pow", []string{v.fwd(a), v.scalar(e - 1)}), v.scalar(e)})
			}
		} else {
			e := v.in(1)
			if !v.isConst(e) {
				e = v.fwd(e)
			}
			// e * a^(e-1) = e * y / a would divide by zero: use Pow.
			em1 := v.op("Sub", []string{e, v.scalar(1)})
			d = v.op("Mul", []string{v.op("Pow", []string{v.fwd(a), em1}), e})
		}
		g := v.gy[0]
		if d != "" {
			g = v.op("Mul", []string{g, d})
		}
		if out[0], err = v.unbroadcastIn(g, 0); err != nil {
			return nil, err
		}
	}
	if v.want[1] {
		g := v.op("Mul", []string{v.gy[0], v.op("Mul", []string{v.fwdOut(0), v.op("Log", []string{v.fwd(a)})})})
		if out[1], err = v.unbroadcastIn(g, 1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func vjpSqrt(v *vjp) ([]string, error) {
	// d sqrt(x) = 0.5 / y
	return []string{v.op("Div", []string{v.op("Mul", []string{v.gy[0], v.scalar(0.5)}), v.fwdOut(0)})}, nil
}

func vjpExp(v *vjp) ([]string, error) {
	return []string{v.op("Mul", []string{v.gy[0], v.fwdOut(0)})}, nil
}

func vjpLog(v *vjp) ([]string, error) {
	return []string{v.op("Div", []string{v.gy[0], v.fwd(v.in(0))})}, nil
}

func vjpTanh(v *vjp) ([]string, error) {
	y := v.fwdOut(0)
	d := v.op("Sub", []string{v.scalar(1), v.op("Mul", []string{y, y})})
	return []string{v.op("Mul", []string{v.gy[0], d})}, nil
}

func vjpSigmoid(v *vjp) ([]string, error) {
	y := v.fwdOut(0)
	d := v.op("Mul", []string{y, v.op("Sub", []string{v.scalar(1), y})})
	return []string{v.op("Mul", []string{v.gy[0], d})}, nil
}

func vjpRelu(v *vjp) ([]string, error) {
	pos := v.op("Greater", []string{v.fwd(v.in(0)), v.zero()})
	return []string{v.op("Where", []string{pos, v.gy[0], v.zero()})}, nil
}

// vjpMaxMin gives the gradient to the selected input (the first on ties).
func vjpMaxMin(isMax bool) vjpRule {
	return func(v *vjp) ([]string, error) {
		if len(v.n.GetInput()) != 2 {
			if len(v.n.GetInput()) == 1 {
				return []string{v.gy[0]}, nil
			}
			return nil, fmt.Errorf("%w: %s with %d inputs", ErrNoVJP, v.n.GetOpType(), len(v.n.GetInput()))
		}
		cmp := "GreaterOrEqual"
		if !isMax {
			cmp = "LessOrEqual"
		}
		a, b := v.fwd(v.in(0)), v.fwd(v.in(1))
		first := v.op(cmp, []string{a, b})
		out := make([]string, 2)
		var err error
		if v.want[0] {
			if out[0], err = v.unbroadcastIn(v.op("Where", []string{first, v.gy[0], v.zero()}), 0); err != nil {
				return nil, err
			}
		}
		if v.want[1] {
			if out[1], err = v.unbroadcastIn(v.op("Where", []string{first, v.zero(), v.gy[0]}), 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}

// vjpWhere passes the gradient to the branch each element was taken from.
func vjpWhere(v *vjp) ([]string, error) {
	cond := v.fwd(v.in(0))
	out := make([]string, 3)
	var err error
	if v.want[1] {
		if out[1], err = v.unbroadcastIn(v.op("Where", []string{cond, v.gy[0], v.zero()}), 1); err != nil {
			return nil, err
		}
	}
	if v.want[2] {
		if out[2], err = v.unbroadcastIn(v.op("Where", []string{cond, v.zero(), v.gy[0]}), 2); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// vjpSoftmax is y * (g - sum(g*y)) over the softmax axis. Entries masked
// with -inf have y = 0 and so get a zero gradient, never NaN.
func vjpSoftmax(v *vjp) ([]string, error) {
	ysh, err := v.shape(v.out(0))
	if err != nil {
		return nil, err
	}
	axis := int64(normAxis(v.attrInt("axis", -1), len(ysh)))
	y := v.fwdOut(0)
	s := v.op("ReduceSum", []string{v.op("Mul", []string{v.gy[0], y}), v.ints(axis)}, AttrInt("keepdims", 1))
	return []string{v.op("Mul", []string{y, v.op("Sub", []string{v.gy[0], s})})}, nil
}

// vjpReduce spreads the gradient back over the reduced axes (divided by
// their size for a mean).
func vjpReduce(mean bool) vjpRule {
	return func(v *vjp) ([]string, error) {
		xsh, err := v.shape(v.in(0))
		if err != nil {
			return nil, err
		}
		sh := &shaper{consts: v.d.constVals}
		axes, ok := sh.reduceAxes(v.n, len(xsh))
		if !ok {
			return nil, fmt.Errorf("%w: axes of %s are not constant", ErrGrad, v.n.GetOpType())
		}
		if len(axes) == 0 { // noop_with_empty_axes
			return []string{v.gy[0]}, nil
		}
		g := v.gy[0]
		ax := make([]int64, len(axes))
		red := map[int]bool{}
		for i, a := range axes {
			ax[i] = int64(a)
			red[a] = true
		}
		if v.attrInt("keepdims", 1) == 0 {
			g = v.op("Unsqueeze", []string{g, v.ints(ax...)})
		}
		// Sizes of the reduced axes; the others broadcast from g.
		target := make([]int64, len(xsh))
		count := int64(1)
		known := true
		for i, dm := range xsh {
			switch {
			case !red[i]:
				target[i] = 1
			case dm.known():
				target[i] = dm.N
				count *= dm.N
			default:
				known = false
			}
		}
		if mean {
			if known {
				g = v.op("Mul", []string{g, v.scalar(1 / float64(count))})
			} else {
				dims := v.op("Gather", []string{v.shapeOf(v.in(0)), v.ints(ax...)})
				n := v.op("Cast", []string{v.op("ReduceProd", []string{dims}, AttrInt("keepdims", 0))}, AttrInt("to", int64(v.elem)))
				g = v.op("Div", []string{g, n})
			}
		}
		shape := v.ints(target...)
		if !known {
			shape = v.shapeOf(v.in(0))
		}
		return []string{v.op("Expand", []string{g, shape})}, nil
	}
}

// vjpMatMul: dA = g Bᵀ, dB = Aᵀ g, summed over broadcast batch axes. A
// constant 2-D B (a weight) takes the Gemm path with transB, so the weight
// is never transposed into a copy.
func vjpMatMul(v *vjp) ([]string, error) {
	a, b := v.in(0), v.in(1)
	ash, err := v.shape(a)
	if err != nil {
		return nil, err
	}
	bsh, err := v.shape(b)
	if err != nil {
		return nil, err
	}
	ysh, err := v.shape(v.out(0))
	if err != nil {
		return nil, err
	}
	if len(ash) < 2 || len(bsh) < 2 {
		return nil, fmt.Errorf("%w: MatMul with a 1-D operand", ErrNoVJP)
	}
	g := v.gy[0]
	out := make([]string, 2)
	if v.want[0] {
		if len(bsh) == 2 && v.isConst(b) && bsh.Known() {
			K, N := bsh[0].N, bsh[1].N
			g2 := g
			if len(ysh) != 2 {
				g2 = v.op("Reshape", []string{g, v.ints(-1, N)})
			}
			r := v.op("Gemm", []string{g2, b}, AttrInt("transB", 1))
			if len(ysh) != 2 {
				lead := v.op("Slice", []string{v.op("Shape", []string{g}), v.ints(0), v.ints(-1)})
				r = v.op("Reshape", []string{r, v.op("Concat", []string{lead, v.ints(K)}, AttrInt("axis", 0))})
			}
			out[0] = r
		} else {
			bb := b
			if !v.isConst(b) {
				bb = v.fwd(b)
			}
			prod := v.op("MatMul", []string{g, v.transposeLast2(bb, len(bsh))})
			psh := append(append(Shape{}, ysh[:len(ysh)-2]...), ysh[len(ysh)-2], ash[len(ash)-1])
			if out[0], err = v.unbroadcast(prod, psh, ash); err != nil {
				return nil, err
			}
		}
	}
	if v.want[1] {
		aa := a
		if !v.isConst(a) {
			aa = v.fwd(a)
		}
		prod := v.op("MatMul", []string{v.transposeLast2(aa, len(ash)), g})
		psh := append(append(Shape{}, ysh[:len(ysh)-2]...), ash[len(ash)-1], ysh[len(ysh)-1])
		if out[1], err = v.unbroadcast(prod, psh, bsh); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// vjpGemm differentiates Y = alpha op(A) op(B) + beta C.
func vjpGemm(v *vjp) ([]string, error) {
	alpha := 1.0
	beta := 1.0
	if a := attr(v.n, "alpha"); a != nil {
		alpha = float64(a.GetF())
	}
	if a := attr(v.n, "beta"); a != nil {
		beta = float64(a.GetF())
	}
	transA, transB := v.attrInt("transA", 0), v.attrInt("transB", 0)
	g := v.gy[0]
	out := make([]string, 3)
	ref := func(t string) string {
		if v.isConst(t) {
			return t
		}
		return v.fwd(t)
	}
	if v.want[0] {
		// d op(A) = alpha g op(B)ᵀ
		r := v.op("Gemm", []string{g, ref(v.in(1))}, AttrFloat("alpha", float32(alpha)), AttrInt("transB", 1-transB))
		if transA != 0 {
			r = v.transposeGrad(r, []int64{1, 0})
		}
		out[0] = r
	}
	if v.want[1] {
		// d op(B) = alpha op(A)ᵀ g
		r := v.op("Gemm", []string{ref(v.in(0)), g}, AttrFloat("alpha", float32(alpha)), AttrInt("transA", 1-transA))
		if transB != 0 {
			r = v.transposeGrad(r, []int64{1, 0})
		}
		out[1] = r
	}
	if len(v.want) > 2 && v.want[2] {
		gc := g
		if beta != 1 {
			gc = v.op("Mul", []string{g, v.scalar(beta)})
		}
		var err error
		if out[2], err = v.unbroadcastIn(gc, 2); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func vjpTranspose(v *vjp) ([]string, error) {
	xsh, err := v.shape(v.in(0))
	if err != nil {
		return nil, err
	}
	perm := permOf(v.n, len(xsh))
	inv := make([]int64, len(perm))
	for i, p := range perm {
		inv[p] = int64(i)
	}
	return []string{v.transposeGrad(v.gy[0], inv)}, nil
}

func vjpReshape(v *vjp) ([]string, error) {
	ysh, err := v.shape(v.out(0))
	if err != nil {
		return nil, err
	}
	return []string{v.op("Reshape", []string{v.gy[0], v.reshapeTarget(v.in(0), ysh)})}, nil
}

func (v *vjp) axes(inputIdx int) ([]int64, bool) {
	if a := attr(v.n, "axes"); a != nil {
		return a.GetInts(), true
	}
	if inputIdx < len(v.n.GetInput()) {
		sh := &shaper{consts: v.d.constVals}
		return sh.constInts(v.n.GetInput()[inputIdx])
	}
	return nil, false
}

func vjpSqueeze(v *vjp) ([]string, error) {
	axes, ok := v.axes(1)
	if !ok || len(axes) == 0 {
		ysh, err := v.shape(v.out(0))
		if err != nil {
			return nil, err
		}
		return []string{v.op("Reshape", []string{v.gy[0], v.reshapeTarget(v.in(0), ysh)})}, nil
	}
	return []string{v.op("Unsqueeze", []string{v.gy[0], v.ints(axes...)})}, nil
}

func vjpUnsqueeze(v *vjp) ([]string, error) {
	axes, ok := v.axes(1)
	if !ok {
		return nil, fmt.Errorf("%w: Unsqueeze axes are not constant", ErrGrad)
	}
	return []string{v.op("Squeeze", []string{v.gy[0], v.ints(axes...)})}, nil
}

// vjpConcat slices the gradient back into the pieces.
func vjpConcat(v *vjp) ([]string, error) {
	ysh, err := v.shape(v.out(0))
	if err != nil {
		return nil, err
	}
	axis := int64(normAxis(v.attrInt("axis", 0), len(ysh)))
	ins := v.n.GetInput()
	out := make([]string, len(ins))
	start := v.ints(0)
	staticStart, static := int64(0), true
	for i, in := range ins {
		ish, err := v.shape(in)
		if err != nil {
			return nil, err
		}
		size := ish[axis]
		var end string
		switch {
		case i == len(ins)-1:
			end = v.ints(math.MaxInt64)
		case static && size.known():
			end = v.ints(staticStart + size.N)
		default:
			dim := v.op("Slice", []string{v.op("Shape", []string{v.fwd(in)}), v.ints(axis), v.ints(axis + 1)})
			end = v.op("Add", []string{start, dim})
			static = false
		}
		if v.want[i] {
			out[i] = v.op("Slice", []string{v.gy[0], start, end, v.ints(axis)})
		}
		if static && size.known() {
			staticStart += size.N
		} else {
			static = false
		}
		start = end
	}
	return out, nil
}

func vjpExpand(v *vjp) ([]string, error) {
	g, err := v.unbroadcastIn(v.gy[0], 0)
	return []string{g, ""}, err
}

// vjpTopK scatters the values' gradient back to where they were taken.
func vjpTopK(v *vjp) ([]string, error) {
	xsh, err := v.shape(v.in(0))
	if err != nil {
		return nil, err
	}
	axis := int64(normAxis(v.attrInt("axis", -1), len(xsh)))
	g := v.op("ScatterElements", []string{v.zerosLike(v.in(0)), v.fwdOut(1), v.gy[0]}, AttrInt("axis", axis))
	return []string{g, ""}, nil
}

func vjpScatterElements(v *vjp) ([]string, error) {
	xsh, err := v.shape(v.in(0))
	if err != nil {
		return nil, err
	}
	axis := AttrInt("axis", int64(normAxis(v.attrInt("axis", 0), len(xsh))))
	idx := v.fwd(v.in(1))
	red := ""
	if a := attr(v.n, "reduction"); a != nil {
		red = string(a.GetS())
	}
	if red != "" && red != "none" && red != "add" {
		return nil, fmt.Errorf("%w: ScatterElements reduction %q", ErrNoVJP, red)
	}
	out := make([]string, 3)
	gu := v.op("GatherElements", []string{v.gy[0], idx}, axis)
	if v.want[0] {
		if red == "add" {
			out[0] = v.gy[0]
		} else {
			zeros := v.op("Mul", []string{gu, v.zero()})
			out[0] = v.op("ScatterElements", []string{v.gy[0], idx, zeros}, axis)
		}
	}
	if v.want[2] {
		out[2] = gu
	}
	return out, nil
}

func vjpGatherElements(v *vjp) ([]string, error) {
	xsh, err := v.shape(v.in(0))
	if err != nil {
		return nil, err
	}
	axis := int64(normAxis(v.attrInt("axis", 0), len(xsh)))
	red := &onnxpb.AttributeProto{Name: proto.String("reduction"), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte("add")}
	g := v.op("ScatterElements", []string{v.zerosLike(v.in(0)), v.fwd(v.in(1)), v.gy[0]}, AttrInt("axis", axis), red)
	return []string{g, ""}, nil
}

// DifferentiableOps lists the operators that have a gradient rule, sorted.
func DifferentiableOps() []string {
	ops := make([]string, 0, len(vjpRules))
	for op := range vjpRules {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

func vjpCos(v *vjp) ([]string, error) {
	d := v.op("Neg", []string{v.op("Sin", []string{v.fwd(v.in(0))})})
	return []string{v.op("Mul", []string{v.gy[0], d})}, nil
}

func vjpSin(v *vjp) ([]string, error) {
	return []string{v.op("Mul", []string{v.gy[0], v.op("Cos", []string{v.fwd(v.in(0))})})}, nil
}

// vjpSlice pads the gradient with zeros back to the input's shape (steps of
// 1 only): a constant padding where the sliced sizes are known, else one
// computed from the input's shape.
func vjpSlice(v *vjp) ([]string, error) {
	xsh, err := v.shape(v.in(0))
	if err != nil {
		return nil, err
	}
	r := len(xsh)
	sh := &shaper{consts: v.d.constVals}
	starts, ok1 := sh.constInts(inputName(v.n, 1))
	ends, ok2 := sh.constInts(inputName(v.n, 2))
	if !ok1 || !ok2 || len(starts) != len(ends) {
		return nil, fmt.Errorf("%w: Slice with starts/ends that are not constant", ErrNoVJP)
	}
	axes := make([]int64, len(starts))
	for i := range axes {
		axes[i] = int64(i)
	}
	if a, ok := sh.constInts(inputName(v.n, 3)); ok && inputName(v.n, 3) != "" {
		axes = a
	}
	if st, ok := sh.constInts(inputName(v.n, 4)); ok && inputName(v.n, 4) != "" {
		for _, x := range st {
			if x != 1 {
				return nil, fmt.Errorf("%w: Slice with step %d", ErrNoVJP, x)
			}
		}
	}
	// Per axis: the padding before and after, as int64 scalars in 1-D.
	begin := make([]string, r)
	after := make([]string, r)
	static := true
	bv, av := make([]int64, r), make([]int64, r)
	for i := range begin {
		begin[i], after[i] = v.ints(0), v.ints(0)
	}
	var dims string
	for i, a := range axes {
		ax := normAxis(a, r)
		s, e := starts[i], ends[i]
		if d := xsh[ax]; d.known() {
			b, en := clampSlice(s, d.N), clampSlice(e, d.N)
			if en < b {
				en = b
			}
			bv[ax], av[ax] = b, d.N-en
			begin[ax], after[ax] = v.ints(b), v.ints(d.N-en)
			continue
		}
		static = false
		if dims == "" {
			dims = v.op("Shape", []string{v.fwd(v.in(0))})
		}
		D := v.op("Slice", []string{dims, v.ints(int64(ax)), v.ints(int64(ax) + 1)})
		b := v.clampDyn(s, D)
		en := v.op("Max", []string{v.clampDyn(e, D), b})
		begin[ax], after[ax] = b, v.op("Sub", []string{D, en})
	}
	var pads string
	if static {
		pads = v.ints(append(bv, av...)...)
	} else {
		pads = v.op("Concat", append(append([]string{}, begin...), after...), AttrInt("axis", 0))
	}
	out := make([]string, len(v.n.GetInput()))
	out[0] = v.op("Pad", []string{v.gy[0], pads})
	return out, nil
}

// clampSlice is Slice's reading of an index on an axis of size d.
func clampSlice(i, d int64) int64 {
	if i < 0 {
		i += d
	}
	return max(0, min(i, d))
}

// clampDyn is clampSlice with d a 1-D int64 tensor.
func (v *vjp) clampDyn(i int64, d string) string {
	if i >= 0 {
		return v.op("Min", []string{v.ints(i), d})
	}
	return v.op("Max", []string{v.op("Add", []string{d, v.ints(i)}), v.ints(0)})
}

// vjpEinsum: the gradient of an input is the einsum of the output gradient
// with the other inputs, written to the input's indices. Each index of an
// input must appear in the output or in another input.
func vjpEinsum(v *vjp) ([]string, error) {
	a := attr(v.n, "equation")
	if a == nil {
		return nil, fmt.Errorf("%w: Einsum without equation", ErrGrad)
	}
	ins, out, ok := parseEinsum(string(a.GetS()))
	if !ok || len(ins) != len(v.n.GetInput()) {
		return nil, fmt.Errorf("%w: Einsum %q (explicit equations without ... only)", ErrNoVJP, a.GetS())
	}
	res := make([]string, len(ins))
	for i := range ins {
		if !v.want[i] {
			continue
		}
		have := map[rune]bool{}
		for _, c := range out {
			have[c] = true
		}
		terms := []string{string(out)}
		operands := []string{v.gy[0]}
		for j, t := range ins {
			if j == i {
				continue
			}
			for _, c := range t {
				have[c] = true
			}
			terms = append(terms, string(t))
			x := v.in(j)
			if !v.isConst(x) {
				x = v.fwd(x)
			}
			operands = append(operands, x)
		}
		seen := map[rune]bool{}
		for _, c := range ins[i] {
			if !have[c] || seen[c] {
				return nil, fmt.Errorf("%w: Einsum %q: index %c of input %d", ErrNoVJP, a.GetS(), c, i)
			}
			seen[c] = true
		}
		eq := strings.Join(terms, ",") + "->" + string(ins[i])
		res[i] = v.op("Einsum", operands, &onnxpb.AttributeProto{Name: proto.String("equation"), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(eq)})
	}
	return res, nil
}
