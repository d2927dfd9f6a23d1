package graphs

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
)

// Dim is one axis of a statically inferred shape: a known size (N >= 0), or
// a symbol (N < 0) naming a size only known at run time. Two axes with the
// same symbol have the same size; an unknown size gets a fresh symbol of its
// own ("?7"), so equality stays trackable through Reshape's 0 and through
// elementwise ops.
type Dim struct {
	N   int64
	Sym string
}

func (d Dim) known() bool { return d.N >= 0 }

func (d Dim) isOne() bool { return d.N == 1 }

func (d Dim) same(e Dim) bool {
	if d.known() || e.known() {
		return d.N == e.N
	}
	return d.Sym == e.Sym
}

func (d Dim) String() string {
	if d.known() {
		return fmt.Sprint(d.N)
	}
	return d.Sym
}

// Shape is a statically inferred shape (the rank is always known).
type Shape []Dim

// Known reports whether every axis has a known size.
func (s Shape) Known() bool {
	for _, d := range s {
		if !d.known() {
			return false
		}
	}
	return true
}

// Ints returns the sizes of a fully known shape.
func (s Shape) Ints() []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = d.N
	}
	return out
}

// shaper infers static shapes over one graph.
type shaper struct {
	shapes map[string]Shape
	consts map[string]*onnxpb.TensorProto
	fresh  int
}

func (s *shaper) newSym() Dim {
	s.fresh++
	return Dim{N: -1, Sym: fmt.Sprintf("?%d", s.fresh)}
}

// InferShapes gives the static shape of every tensor whose rank it can
// establish: from value infos and initializers, then by propagation through
// the nodes with each operator's shape rule. Tensors of unknown rank are
// absent from the result.
func InferShapes(m *onnxpb.ModelProto) map[string]Shape {
	g := m.GetGraph()
	s := &shaper{shapes: map[string]Shape{}, consts: map[string]*onnxpb.TensorProto{}}
	for _, t := range g.GetInitializer() {
		s.consts[t.GetName()] = t
		sh := make(Shape, len(t.GetDims()))
		for i, d := range t.GetDims() {
			sh[i] = Dim{N: d}
		}
		s.shapes[t.GetName()] = sh
	}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetInput(), g.GetValueInfo(), g.GetOutput()} {
		for _, v := range list {
			if _, ok := s.shapes[v.GetName()]; ok {
				continue
			}
			if sh, ok := valueInfoShape(v); ok {
				s.shapes[v.GetName()] = sh
			}
		}
	}
	order, err := TopoOrder(g)
	if err != nil {
		return s.shapes
	}
	nodes := g.GetNode()
	for _, i := range order {
		n := nodes[i]
		if n.GetOpType() == "Constant" {
			if a := attr(n, "value"); a != nil && a.GetT() != nil && len(n.GetOutput()) == 1 {
				s.consts[n.GetOutput()[0]] = a.GetT()
			}
		}
		outs := s.infer(n)
		for j, o := range n.GetOutput() {
			if o == "" || j >= len(outs) || outs[j] == nil {
				continue
			}
			if prev, ok := s.shapes[o]; ok && len(prev) == len(outs[j]) {
				// A declared shape wins, but a known size beats a symbol.
				for k := range prev {
					if !prev[k].known() && outs[j][k].known() {
						prev[k] = outs[j][k]
					}
				}
				continue
			}
			s.shapes[o] = outs[j]
		}
	}
	return s.shapes
}

func valueInfoShape(v *onnxpb.ValueInfoProto) (Shape, bool) {
	tt := v.GetType().GetTensorType()
	if tt == nil || tt.GetShape() == nil {
		return nil, false
	}
	var sh Shape
	for _, d := range tt.GetShape().GetDim() {
		switch x := d.GetValue().(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			sh = append(sh, Dim{N: x.DimValue})
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			sh = append(sh, Dim{N: -1, Sym: x.DimParam})
		default:
			sh = append(sh, Dim{N: -1, Sym: "?" + v.GetName() + fmt.Sprintf("#%d", len(sh))})
		}
	}
	return sh, true
}

// constInts returns the values of a constant int64 tensor.
func (s *shaper) constInts(name string) ([]int64, bool) {
	t, ok := s.consts[name]
	if !ok || t.GetDataType() != int32(Int64) {
		return nil, false
	}
	if len(t.GetInt64Data()) > 0 || len(t.GetRawData()) == 0 {
		return t.GetInt64Data(), true
	}
	raw := t.GetRawData()
	out := make([]int64, len(raw)/8)
	for i := range out {
		var v uint64
		for b := 0; b < 8; b++ {
			v |= uint64(raw[8*i+b]) << (8 * b)
		}
		out[i] = int64(v)
	}
	return out, true
}

func (s *shaper) in(n *onnxpb.NodeProto, i int) (Shape, bool) {
	if i >= len(n.GetInput()) || n.GetInput()[i] == "" {
		return nil, false
	}
	sh, ok := s.shapes[n.GetInput()[i]]
	return sh, ok
}

func normAxis(a int64, rank int) int {
	if a < 0 {
		a += int64(rank)
	}
	return int(a)
}

// broadcastShapes is numpy broadcasting over static shapes.
func (s *shaper) broadcastShapes(shs ...Shape) Shape {
	r := 0
	for _, sh := range shs {
		if len(sh) > r {
			r = len(sh)
		}
	}
	out := make(Shape, r)
	for k := 0; k < r; k++ {
		var pick *Dim
		for _, sh := range shs {
			j := len(sh) - r + k
			if j < 0 {
				continue
			}
			d := sh[j]
			switch {
			case pick == nil:
				pick = &d
			case pick.isOne():
				pick = &d
			case d.isOne():
			case !pick.known() && d.known():
				pick = &d
			}
		}
		out[k] = *pick
	}
	return out
}

func (s *shaper) infer(n *onnxpb.NodeProto) []Shape {
	one := func(sh Shape) []Shape { return []Shape{sh} }
	x, xok := s.in(n, 0)
	switch n.GetOpType() {
	case "Identity", "Neg", "Sqrt", "Exp", "Log", "Tanh", "Relu", "Sigmoid", "Abs", "Erf", "Cast", "CastLike",
		"Not", "Softmax", "LogSoftmax", "CumSum", "IsNaN", "IsInf", "Sign", "Reciprocal", "Floor", "Ceil",
		"Cos", "Sin", "Trilu", "Dropout":
		if xok {
			return one(x)
		}
	case "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Where", "Equal", "Less", "Greater",
		"LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod", "PRelu":
		var shs []Shape
		for i := range n.GetInput() {
			sh, ok := s.in(n, i)
			if !ok {
				return nil
			}
			shs = append(shs, sh)
		}
		return one(s.broadcastShapes(shs...))
	case "MatMul":
		b, bok := s.in(n, 1)
		if !xok || !bok || len(x) < 2 || len(b) < 2 {
			return nil
		}
		batch := s.broadcastShapes(x[:len(x)-2], b[:len(b)-2])
		return one(append(append(Shape{}, batch...), x[len(x)-2], b[len(b)-1]))
	case "Gemm":
		b, bok := s.in(n, 1)
		if !xok || !bok || len(x) != 2 || len(b) != 2 {
			return nil
		}
		m, nn := x[0], b[1]
		if a := attr(n, "transA"); a != nil && a.GetI() != 0 {
			m = x[1]
		}
		if a := attr(n, "transB"); a != nil && a.GetI() != 0 {
			nn = b[0]
		}
		return one(Shape{m, nn})
	case "Transpose":
		if !xok {
			return nil
		}
		perm := permOf(n, len(x))
		out := make(Shape, len(x))
		for i, p := range perm {
			out[i] = x[p]
		}
		return one(out)
	case "Reshape":
		return one(s.reshape(n, x, xok))
	case "Concat":
		a := attr(n, "axis")
		var shs []Shape
		for i := range n.GetInput() {
			sh, ok := s.in(n, i)
			if !ok {
				return nil
			}
			shs = append(shs, sh)
		}
		if len(shs) == 0 || a == nil {
			return nil
		}
		ax := normAxis(a.GetI(), len(shs[0]))
		out := append(Shape{}, shs[0]...)
		sum := int64(0)
		for _, sh := range shs {
			if len(sh) != len(out) || !sh[ax].known() {
				sum = -1
				break
			}
			sum += sh[ax].N
		}
		if sum >= 0 {
			out[ax] = Dim{N: sum}
		} else {
			nonEmpty := []Dim{}
			for _, sh := range shs {
				if !(sh[ax].known() && sh[ax].N == 0) {
					nonEmpty = append(nonEmpty, sh[ax])
				}
			}
			if len(nonEmpty) == 1 {
				out[ax] = nonEmpty[0]
			} else {
				out[ax] = s.newSym()
			}
		}
		return one(out)
	case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceLogSumExp":
		if !xok {
			return nil
		}
		axes, ok := s.reduceAxes(n, len(x))
		if !ok {
			return nil
		}
		keep := true
		if a := attr(n, "keepdims"); a != nil && a.GetI() == 0 {
			keep = false
		}
		red := map[int]bool{}
		for _, a := range axes {
			red[a] = true
		}
		var out Shape
		for i, d := range x {
			switch {
			case !red[i]:
				out = append(out, d)
			case keep:
				out = append(out, Dim{N: 1})
			}
		}
		return one(out)
	case "Squeeze":
		if !xok {
			return nil
		}
		axes, ok := s.axesInput(n, 1, len(x))
		if !ok {
			return nil
		}
		drop := map[int]bool{}
		for _, a := range axes {
			drop[a] = true
		}
		var out Shape
		for i, d := range x {
			if !drop[i] {
				out = append(out, d)
			}
		}
		return one(out)
	case "Unsqueeze":
		if !xok {
			return nil
		}
		r := len(x)
		axesRaw, ok := s.constInts(inputName(n, 1))
		if !ok {
			return nil
		}
		r += len(axesRaw)
		ins := map[int]bool{}
		for _, a := range axesRaw {
			ins[normAxis(a, r)] = true
		}
		out := make(Shape, 0, r)
		j := 0
		for i := 0; i < r; i++ {
			if ins[i] {
				out = append(out, Dim{N: 1})
			} else if j < len(x) {
				out = append(out, x[j])
				j++
			}
		}
		return one(out)
	case "Gather":
		idx, iok := s.in(n, 1)
		if !xok || !iok {
			return nil
		}
		ax := 0
		if a := attr(n, "axis"); a != nil {
			ax = normAxis(a.GetI(), len(x))
		}
		out := append(append(append(Shape{}, x[:ax]...), idx...), x[ax+1:]...)
		return one(out)
	case "GatherElements":
		if idx, ok := s.in(n, 1); ok {
			return one(idx)
		}
	case "ScatterElements", "ScatterND", "Expand":
		if n.GetOpType() == "Expand" {
			vals, ok := s.constInts(inputName(n, 1))
			if !xok || !ok {
				return nil
			}
			sh := make(Shape, len(vals))
			for i, v := range vals {
				sh[i] = Dim{N: v}
			}
			return one(s.broadcastShapes(x, sh))
		}
		if xok {
			return one(x)
		}
	case "Shape":
		if xok {
			start, end := 0, len(x)
			if a := attr(n, "start"); a != nil {
				start = clampAxis(a.GetI(), len(x))
			}
			if a := attr(n, "end"); a != nil {
				end = clampAxis(a.GetI(), len(x))
			}
			if end < start {
				end = start
			}
			return one(Shape{{N: int64(end - start)}})
		}
	case "TopK":
		if !xok {
			return nil
		}
		ax := len(x) - 1
		if a := attr(n, "axis"); a != nil {
			ax = normAxis(a.GetI(), len(x))
		}
		out := append(Shape{}, x...)
		if k, ok := s.constInts(inputName(n, 1)); ok && len(k) == 1 {
			out[ax] = Dim{N: k[0]}
		} else {
			out[ax] = s.newSym()
		}
		return []Shape{out, out}
	case "ConstantOfShape":
		if sh, ok := s.in(n, 0); ok && len(sh) == 1 && sh[0].known() {
			vals, vok := s.constInts(inputName(n, 0))
			out := make(Shape, sh[0].N)
			for i := range out {
				if vok {
					out[i] = Dim{N: vals[i]}
				} else {
					out[i] = s.newSym()
				}
			}
			return one(out)
		}
	case "Constant":
		if a := attr(n, "value"); a != nil && a.GetT() != nil {
			sh := make(Shape, len(a.GetT().GetDims()))
			for i, d := range a.GetT().GetDims() {
				sh[i] = Dim{N: d}
			}
			return one(sh)
		}
	case "Range":
		return one(Shape{s.newSym()})
	case "Einsum":
		if out := s.einsum(n); out != nil {
			return one(out)
		}
	case "Slice":
		if !xok {
			return nil
		}
		out := append(Shape{}, x...)
		axes, ok := s.constInts(inputName(n, 3))
		if !ok {
			for i := range out {
				out[i] = s.newSym()
			}
			return one(out)
		}
		for _, a := range axes {
			out[normAxis(a, len(x))] = s.newSym()
		}
		return one(out)
	}
	return nil
}
