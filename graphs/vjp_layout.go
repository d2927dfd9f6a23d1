package graphs

import (
	"fmt"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Gradient rules of matrix products and of the operators that move, cut,
// join, gather or scatter values.

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
				lead := v.op("Shape", []string{g}, AttrInt("end", -1))
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

// vjpConcat gathers each piece's rows of the gradient back along the axis
// (a Gather over the piece's index range, not a Slice: ONNX Runtime 1.29's
// plugin CUDA provider crashes in Slice; nor a Split, which ONNX Runtime's
// CPU kernel does not survive with an empty piece, such as an empty KV
// cache).
func vjpConcat(v *vjp) ([]string, error) {
	ysh, err := v.shape(v.out(0))
	if err != nil {
		return nil, err
	}
	axis := int64(normAxis(v.attrInt("axis", 0), len(ysh)))
	ins := v.n.GetInput()
	out := make([]string, len(ins))
	var offset int64 // start of the piece while every size so far is known
	var start string // else the start as an int64 scalar
	one := v.d.b.ConstI64("", nil, 1)
	for i, in := range ins {
		ish, err := v.shape(in)
		if err != nil {
			return nil, err
		}
		d := ish[axis]
		if start == "" && d.known() {
			if v.want[i] {
				idx := make([]int64, d.N)
				for k := range idx {
					idx[k] = offset + int64(k)
				}
				out[i] = v.op("Gather", []string{v.gy[0], v.d.b.ConstI64("", []int64{d.N}, idx...)}, AttrInt("axis", axis))
			}
			offset += d.N
			continue
		}
		if start == "" {
			start, one = v.d.b.ConstI64("", nil, offset), v.d.b.ConstI64("", nil, 1)
		}
		var size string
		if d.known() {
			size = v.d.b.ConstI64("", nil, d.N)
		} else {
			size = v.op("Squeeze", []string{v.op("Shape", []string{v.fwd(in)}, AttrInt("start", axis), AttrInt("end", axis+1)), v.ints(0)})
		}
		end := v.op("Add", []string{start, size})
		if v.want[i] {
			out[i] = v.op("Gather", []string{v.gy[0], v.op("Range", []string{start, end, one})}, AttrInt("axis", axis))
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
		D := v.op("Shape", []string{v.fwd(v.in(0))}, AttrInt("start", int64(ax)), AttrInt("end", int64(ax)+1))
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
