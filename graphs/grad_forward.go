package graphs

import (
	"fmt"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"google.golang.org/protobuf/proto"
)

// The forward values a backward graph reads: each is taken as it is where
// the forward pass saved it, or made again inside the backward graph (a
// cheap inverse of a saved consumer, or a recomputation of its producer).

// needFwd records that the backward graph reads forward tensor t.
func (d *differ) needFwd(t string) string {
	if !d.needSet[t] {
		d.needSet[t] = true
		d.need = append(d.need, t)
	}
	return t
}

// resolve makes forward tensor t available in the backward graph: an
// initializer, an input (saved or a model input), a cheap inverse of a
// saved consumer (Transpose, Identity), or a recomputation of its producer.
func (d *differ) resolve(t string, seen map[string]bool) error {
	if seen[t] || t == "" {
		return nil
	}
	seen[t] = true
	if base, ok := strings.CutSuffix(t, computedSuffix); ok {
		p, ok := d.producer[base]
		if !ok {
			return fmt.Errorf("%w: %s", ErrNoTensor, base)
		}
		d.renamed[p] = base
		return d.recompute(p, seen)
	}
	switch {
	case d.inits[t] != nil:
		if !d.initUsed[t] {
			d.initUsed[t] = true
		}
		return nil
	case d.inputs[t] || d.saved[t]:
		d.used[t] = true
		return nil
	}
	if d.inverseOf(t, seen) {
		return nil
	}
	p, ok := d.producer[t]
	if !ok {
		return fmt.Errorf("%w: forward value %s is neither saved nor computable", ErrGrad, t)
	}
	return d.recompute(p, seen)
}

func (d *differ) recompute(p int, seen map[string]bool) error {
	if d.fwdNodes[p] {
		return nil
	}
	d.fwdNodes[p] = true
	for _, in := range nodeInputs(d.nodes[p]) {
		if err := d.resolve(in, seen); err != nil {
			return err
		}
	}
	return nil
}

// inverseOf recomputes t from a saved consumer y = Transpose(t) or
// Identity(t), which costs a copy instead of t's producer.
func (d *differ) inverseOf(t string, seen map[string]bool) bool {
	for _, u := range d.users[t] {
		n := d.nodes[u]
		if len(n.GetOutput()) != 1 || len(n.GetInput()) != 1 {
			continue
		}
		y := n.GetOutput()[0]
		if !(d.saved[y] || d.inputs[y]) || d.replaced[y] {
			continue
		}
		switch n.GetOpType() {
		case "Identity":
			d.inverse = append(d.inverse, &onnxpb.NodeProto{
				Name: proto.String("bwd/inverse/" + t), OpType: proto.String("Identity"),
				Input: []string{y}, Output: []string{t},
			})
		case "Transpose":
			sh, ok := d.shapes[t]
			if !ok {
				continue
			}
			perm := permOf(n, len(sh))
			inv := make([]int64, len(perm))
			for i, p := range perm {
				inv[p] = int64(i)
			}
			d.inverse = append(d.inverse, &onnxpb.NodeProto{
				Name: proto.String("bwd/inverse/" + t), OpType: proto.String("Transpose"),
				Input: []string{y}, Output: []string{t}, Attribute: []*onnxpb.AttributeProto{AttrInts("perm", inv...)},
			})
		default:
			continue
		}
		seen[y] = true
		d.used[y] = true
		return true
	}
	return false
}
