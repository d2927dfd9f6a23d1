package export

import (
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// SoftmaxPaths adds to layer l's stage graph the two ways of computing the
// attention's softmax other than the fused one (probsBH = Softmax(lt)), for
// the switches of SoftmaxSwitches. lt is the masked attention logits in the
// [B,H,T,Tk] layout; heads is the head count as a dimension name. It adds:
//
//   - the explicit softmax the original takes when the denominator is
//     hooked: num = exp(S - max_k S), den = sum_k num (the point
//     attn.qk_softmax_denominator), probs = num/den under the name of
//     attn.qk_probs with graphs.ExplicitSuffix, computed in lt's layout (the
//     reductions over the last axis), the hook tensors transposed views that
//     cancel when nothing cuts there;
//   - the denominator where it is only read, under its point's name with
//     graphs.ReadOnlySuffix: the fused softmax's largest probability is
//     exp(0)/den.
func SoftmaxPaths(b *graphs.Builder, lt, probsBH string, l int, heads string) {
	mx := b.Op("ReduceMax", "", []string{lt}, graphs.AttrInts("axes", -1), graphs.AttrInt("keepdims", 1))
	num := b.Op("Exp", "", []string{b.Op("Sub", "", []string{lt, mx})})
	denBH := b.Op("ReduceSum", "", []string{num, b.ConstI64("", []int64{1}, -1)}, graphs.AttrInt("keepdims", 1))
	den := b.Type(b.Op("Transpose", graphs.PointTensor(hooks.AttnQKSoftmaxDenominator, l), []string{denBH}, graphs.AttrInts("perm", 0, 2, 3, 1)), graphs.Float, "B", "T", "1", heads)
	denBack := b.Op("Transpose", "", []string{den}, graphs.AttrInts("perm", 0, 3, 1, 2))
	probs := b.Op("Div", "", []string{num, denBack})
	b.Type(b.Op("Transpose", graphs.PointTensor(hooks.AttnQKProbs, l)+graphs.ExplicitSuffix, []string{probs}, graphs.AttrInts("perm", 0, 2, 3, 1)), graphs.Float, "B", "T", "Tk", heads)

	denRead := b.Op("Reciprocal", "", []string{b.Op("ReduceMax", "", []string{probsBH}, graphs.AttrInts("axes", -1), graphs.AttrInt("keepdims", 1))})
	b.Type(b.Op("Transpose", graphs.PointTensor(hooks.AttnQKSoftmaxDenominator, l)+graphs.ReadOnlySuffix, []string{denRead}, graphs.AttrInts("perm", 0, 2, 3, 1)), graphs.Float, "B", "T", "1", heads)
}

// SoftmaxSwitches lists, for nLayers layers built with SoftmaxPaths, the
// switch of each: a written denominator takes the explicit softmax (its
// probabilities replace attn.qk_probs), a read one is computed from the
// fused softmax's probabilities.
func SoftmaxSwitches(nLayers int) []graphs.Switch {
	s := make([]graphs.Switch, nLayers)
	for l := range s {
		probs, den := graphs.PointTensor(hooks.AttnQKProbs, l), graphs.PointTensor(hooks.AttnQKSoftmaxDenominator, l)
		s[l] = graphs.Switch{
			Point:       hooks.AttnQKSoftmaxDenominator.Path(),
			Layer:       l,
			Replace:     probs,
			With:        probs + graphs.ExplicitSuffix,
			ReadReplace: den,
			ReadWith:    den + graphs.ReadOnlySuffix,
		}
	}
	return s
}
