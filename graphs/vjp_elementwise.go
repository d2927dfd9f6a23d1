package graphs

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
)

// Gradient rules of elementwise operators, reductions and softmax.

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
	return scalarValue(v.d.constVals[t])
}

// scalarValue returns the value of a one-element float or double tensor
// stored in the model (in its typed field or as raw bytes).
func scalarValue(c *onnxpb.TensorProto) (float64, bool) {
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
		out := make([]string, 2)
		return out, v.routeGrad(v.op(cmp, []string{a, b}), 0, 1, out)
	}
}

// vjpWhere passes the gradient to the branch each element was taken from.
func vjpWhere(v *vjp) ([]string, error) {
	out := make([]string, 3)
	return out, v.routeGrad(v.fwd(v.in(0)), 1, 2, out)
}

// routeGrad sends the upstream gradient to input onTrue where cond holds and
// to input onFalse elsewhere, each reduced over the axes it was broadcast on.
func (v *vjp) routeGrad(cond string, onTrue, onFalse int, out []string) error {
	var err error
	if v.want[onTrue] {
		if out[onTrue], err = v.unbroadcastIn(v.op("Where", []string{cond, v.gy[0], v.zero()}), onTrue); err != nil {
			return err
		}
	}
	if v.want[onFalse] {
		if out[onFalse], err = v.unbroadcastIn(v.op("Where", []string{cond, v.zero(), v.gy[0]}), onFalse); err != nil {
			return err
		}
	}
	return nil
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

func vjpCos(v *vjp) ([]string, error) {
	d := v.op("Neg", []string{v.op("Sin", []string{v.fwd(v.in(0))})})
	return []string{v.op("Mul", []string{v.gy[0], d})}, nil
}

func vjpSin(v *vjp) ([]string, error) {
	return []string{v.op("Mul", []string{v.gy[0], v.op("Cos", []string{v.fwd(v.in(0))})})}, nil
}
