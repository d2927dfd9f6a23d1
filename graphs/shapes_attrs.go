package graphs

import (
	"strings"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
)

// The shape rules of InferShapes that read a node's attributes or constant
// inputs rather than only its input shapes: axes, permutations, Reshape's
// target and Einsum's equation.

func clampAxis(a int64, r int) int {
	if a < 0 {
		a += int64(r)
	}
	if a < 0 {
		a = 0
	}
	if a > int64(r) {
		a = int64(r)
	}
	return int(a)
}

func inputName(n *onnxpb.NodeProto, i int) string {
	if i < len(n.GetInput()) {
		return n.GetInput()[i]
	}
	return ""
}

func permOf(n *onnxpb.NodeProto, rank int) []int {
	perm := make([]int, rank)
	if a := attr(n, "perm"); a != nil && len(a.GetInts()) == rank {
		for i, p := range a.GetInts() {
			perm[i] = int(p)
		}
		return perm
	}
	for i := range perm {
		perm[i] = rank - 1 - i
	}
	return perm
}

// reduceAxes gives the reduced axes of a Reduce* node (attribute before
// opset 18 except ReduceSum, input from then on); all axes when none are
// given, unless noop_with_empty_axes.
func (s *shaper) reduceAxes(n *onnxpb.NodeProto, rank int) ([]int, bool) {
	var raw []int64
	if a := attr(n, "axes"); a != nil {
		raw = a.GetInts()
	} else if len(n.GetInput()) > 1 && n.GetInput()[1] != "" {
		v, ok := s.constInts(n.GetInput()[1])
		if !ok {
			return nil, false
		}
		raw = v
	}
	if len(raw) == 0 {
		if a := attr(n, "noop_with_empty_axes"); a != nil && a.GetI() != 0 {
			return nil, true
		}
		all := make([]int, rank)
		for i := range all {
			all[i] = i
		}
		return all, true
	}
	out := make([]int, len(raw))
	for i, a := range raw {
		out[i] = normAxis(a, rank)
	}
	return out, true
}

// axesInput reads the axes input (Squeeze/Unsqueeze, opset 13+) or attribute.
func (s *shaper) axesInput(n *onnxpb.NodeProto, i, rank int) ([]int, bool) {
	var raw []int64
	if a := attr(n, "axes"); a != nil {
		raw = a.GetInts()
	} else {
		v, ok := s.constInts(inputName(n, i))
		if !ok {
			return nil, false
		}
		raw = v
	}
	out := make([]int, len(raw))
	for j, a := range raw {
		out[j] = normAxis(a, rank)
	}
	return out, true
}

func (s *shaper) reshape(n *onnxpb.NodeProto, x Shape, xok bool) Shape {
	vals, ok := s.constInts(inputName(n, 1))
	if !ok {
		sh, sok := s.in(n, 1)
		if !sok || len(sh) != 1 || !sh[0].known() {
			return nil
		}
		out := make(Shape, sh[0].N)
		for i := range out {
			out[i] = s.newSym()
		}
		return out
	}
	allowZero := false
	if a := attr(n, "allowzero"); a != nil && a.GetI() != 0 {
		allowZero = true
	}
	out := make(Shape, len(vals))
	neg := -1
	for i, v := range vals {
		switch {
		case v == 0 && !allowZero:
			if xok && i < len(x) {
				out[i] = x[i]
			} else {
				out[i] = s.newSym()
			}
		case v < 0:
			neg = i
		default:
			out[i] = Dim{N: v}
		}
	}
	if neg >= 0 {
		out[neg] = s.newSym()
		if xok && x.Known() {
			total := int64(1)
			for _, d := range x {
				total *= d.N
			}
			rest := int64(1)
			known := true
			for i, d := range out {
				if i == neg {
					continue
				}
				if !d.known() {
					known = false
					break
				}
				rest *= d.N
			}
			if known && rest > 0 {
				out[neg] = Dim{N: total / rest}
			}
		}
	}
	return out
}

// einsum infers the output of an explicit einsum ("ab,bc->ac").
func (s *shaper) einsum(n *onnxpb.NodeProto) Shape {
	a := attr(n, "equation")
	if a == nil {
		return nil
	}
	ins, out, ok := parseEinsum(string(a.GetS()))
	if !ok || len(ins) != len(n.GetInput()) {
		return nil
	}
	size := map[rune]Dim{}
	for i, term := range ins {
		sh, ok := s.in(n, i)
		if !ok || len(sh) != len(term) {
			return nil
		}
		for j, c := range term {
			if d, seen := size[c]; !seen || d.isOne() {
				size[c] = sh[j]
			}
		}
	}
	var res Shape
	for _, c := range out {
		d, ok := size[c]
		if !ok {
			return nil
		}
		res = append(res, d)
	}
	return res
}

// parseEinsum splits an explicit einsum equation without ellipses into its
// input terms and output term.
func parseEinsum(eq string) ([][]rune, []rune, bool) {
	eq = strings.ReplaceAll(eq, " ", "")
	lhs, rhs, ok := strings.Cut(eq, "->")
	if !ok || strings.Contains(eq, ".") {
		return nil, nil, false
	}
	var ins [][]rune
	for _, t := range strings.Split(lhs, ",") {
		ins = append(ins, []rune(t))
	}
	return ins, []rune(rhs), true
}
