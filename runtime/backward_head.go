package runtime

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"google.golang.org/protobuf/proto"
)

// A loss on the logits reads a few rows of them (one position per batch
// row). Where the logits come from a hook site's tensor by row-wise
// operations only (the unembedding after resid.post_ln_f), the engine
// computes the logits of those rows alone from the site's rows, and the
// gradient of the unembedding on those rows alone: the largest matrix
// product of the forward pass and of the backward pass is skipped
// everywhere else.

const headIn = "head/in"

// rowHead is the row-wise tail from a hook site's tensor to a root tensor,
// with sessions over a batch of rows.
type rowHead struct {
	site    hooks.Site // where the tail starts
	tensor  string     // its tensor
	width   int        // the tensor's last axis
	root    string
	fwd     *session // rows of the site -> rows of the root
	bwd     *session // gradient rows of the root (+ forward rows) -> gradient rows of the site
	bwdIns  []string
	rootDim int // the root's last axis
}

func (h *rowHead) close() error {
	if h == nil {
		return nil
	}
	return firstErr(h.fwd.close(), h.bwd.close())
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// rowWise reports whether node n maps each row of its one non-constant
// input to the same row of its output, returning that input.
func rowWise(n *onnxpb.NodeProto, inits map[string]*onnxpb.TensorProto) (string, bool) {
	var x string
	for _, in := range n.GetInput() {
		if inits[in] != nil {
			continue
		}
		if x != "" || in == "" {
			return "", false
		}
		x = in
	}
	if x == "" || len(n.GetOutput()) != 1 {
		return "", false
	}
	switch n.GetOpType() {
	case "Identity":
		return x, true
	case "MatMul":
		b := inits[n.GetInput()[1]]
		return x, n.GetInput()[0] == x && b != nil && len(b.GetDims()) == 2
	case "Add", "Mul":
		for _, in := range n.GetInput() {
			if c := inits[in]; c != nil && len(c.GetDims()) > 1 {
				return "", false
			}
		}
		return x, true
	}
	return "", false
}

// findHead walks back from the root tensor through row-wise nodes, each
// the only consumer of its input, to a hook site's tensor.
func (e *Engine) findHead(root string) (hooks.Site, []*onnxpb.NodeProto, bool) {
	g := e.g.Model.GetGraph()
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	producer := map[string]*onnxpb.NodeProto{}
	consumers := map[string]int{}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			producer[o] = n
		}
		for _, in := range n.GetInput() {
			consumers[in]++
		}
	}
	siteOf := map[string]hooks.Site{}
	for s, r := range e.g.Points {
		if r.Perm == nil || isIdentity(r.Perm) {
			siteOf[r.Tensor] = s
		}
	}
	var chain []*onnxpb.NodeProto
	t := root
	for len(chain) < 8 {
		n, ok := producer[t]
		if !ok {
			break
		}
		x, ok := rowWise(n, inits)
		if !ok || consumers[x] != 1 {
			break
		}
		chain = append([]*onnxpb.NodeProto{n}, chain...)
		if s, ok := siteOf[x]; ok {
			return s, chain, true
		}
		t = x
	}
	return hooks.Site{}, nil, false
}

// buildHead makes the row sessions of the tail from site to root.
func (e *Engine) buildHead(root hooks.Site) (*rowHead, error) {
	rootT := e.g.Points[root].Tensor
	site, chain, ok := e.findHead(rootT)
	if !ok {
		return nil, nil
	}
	shapes := graphs.InferShapes(e.g.Model)
	types := graphs.InferTypes(e.g.Model)
	st := e.g.Points[site].Tensor
	ssh, rsh := shapes[st], shapes[rootT]
	if len(ssh) == 0 || len(rsh) != len(ssh) || ssh[len(ssh)-1].N <= 0 || rsh[len(rsh)-1].N <= 0 ||
		types[st] != onnxpb.TensorProto_FLOAT || types[rootT] != onnxpb.TensorProto_FLOAT {
		return nil, nil
	}
	h := &rowHead{site: site, tensor: st, width: int(ssh[len(ssh)-1].N), root: rootT, rootDim: int(rsh[len(rsh)-1].N)}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range e.g.Model.GetGraph().GetInitializer() {
		inits[t.GetName()] = t
	}
	g := &onnxpb.GraphProto{Name: proto.String("head")}
	g.Input = []*onnxpb.ValueInfoProto{graphs.ValueInfo(headIn, graphs.Float, "R", fmt.Sprint(h.width))}
	seen := map[string]bool{}
	for _, n := range chain {
		c := proto.Clone(n).(*onnxpb.NodeProto)
		for i, in := range c.Input {
			if in == st {
				c.Input[i] = headIn
			}
			if t := inits[in]; t != nil && !seen[in] {
				seen[in] = true
				g.Initializer = append(g.Initializer, t)
			}
		}
		g.Node = append(g.Node, c)
	}
	g.Output = []*onnxpb.ValueInfoProto{graphs.ValueInfo(rootT, graphs.Float, "R", fmt.Sprint(h.rootDim))}
	m := &onnxpb.ModelProto{IrVersion: e.g.Model.IrVersion, ProducerName: proto.String("onnx-tdb"), OpsetImport: e.g.Model.GetOpsetImport(), Graph: g}
	gr, err := graphs.Backward(m, graphs.GradSpec{Seeds: []string{rootT}, Wrt: []string{headIn}, Saved: []string{headIn}})
	if err != nil || len(gr.Outputs) != 1 || len(gr.Seeds) != 1 {
		return nil, err
	}
	if h.fwd, err = e.segmentSession(m, []string{headIn}, []string{rootT}, "head-fwd"); err != nil {
		return nil, err
	}
	h.bwdIns = append(append([]string(nil), gr.Seeds...), gr.Forward...)
	if h.bwd, err = e.segmentSession(gr.Model, h.bwdIns, gr.Outputs, "head-bwd"); err != nil {
		h.fwd.close()
		return nil, err
	}
	return h, nil
}

// rowHeadFor returns the row head of a root site (nil when it has none).
func (e *Engine) rowHeadFor(root hooks.Site) (*rowHead, error) {
	return e.heads.get(root, func() (*rowHead, error) { return e.buildHead(root) })
}

// gatherRows copies rows (index tuples over all axes but the last) of a
// tensor of shape shape into one [len(rows), width] slice.
func gatherRows(shape []int, data []float32, rows [][]int) ([]float32, []int, error) {
	width := shape[len(shape)-1]
	out := make([]float32, 0, len(rows)*width)
	offs := make([]int, len(rows))
	for i, r := range rows {
		if len(r) != len(shape)-1 {
			return nil, nil, fmt.Errorf("%w: row %v has %d indices for a value of shape %v", ErrSeed, r, len(r), shape)
		}
		off := 0
		for j, x := range r {
			if x < 0 || x >= shape[j] {
				return nil, nil, fmt.Errorf("%w: row %v out of range for a value of shape %v", ErrSeed, r, shape)
			}
			off = off*shape[j] + x
		}
		offs[i] = off * width
		out = append(out, data[offs[i]:offs[i]+width]...)
	}
	return out, offs, nil
}

// scatterRows adds rows [len(offs), width] into a zero tensor of numel n.
func scatterRows(n, width int, rows []float32, offs []int) []float32 {
	out := make([]float32, n)
	for i, off := range offs {
		dst := out[off : off+width]
		for j, x := range rows[i*width : (i+1)*width] {
			dst[j] += x
		}
	}
	return out
}

// runHead computes the root's rows from the site's rows, asks the loss for
// their gradient, and returns the gradient at the site (its full shape) and
// at the root (dense, when wanted).
func (x *bwdExec) runHead(h *rowHead, site *hooks.Tensor, rows [][]int, seed func(*hooks.Tensor) (*hooks.Tensor, error), wantRoot bool) (*hooks.Tensor, *hooks.Tensor, error) {
	shape := site.Shape
	in, offs, err := gatherRows(shape, site.Data, rows)
	if err != nil {
		return nil, nil, err
	}
	R := len(rows)
	rootShape := append(append([]int(nil), shape[:len(shape)-1]...), h.rootDim)
	var gRoot []float32
	gSite := make([]float32, len(site.Data))
	if R > 0 {
		inV, err := newValue([]int64{int64(R), int64(h.width)}, in)
		if err != nil {
			return nil, nil, err
		}
		defer inV.release()
		outs, err := h.fwd.cs.run(x.ro, []*value{inV}, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("rows of %s: %w", h.root, err)
		}
		_, rdata, _ := valueF32(outs[0])
		rootRows := &hooks.Tensor{Shape: []int{R, h.rootDim}, Data: append([]float32(nil), rdata...)}
		releaseAll(outs)
		g, err := seed(rootRows)
		if err != nil {
			return nil, nil, err
		}
		if g == nil || !g.SameShape(rootRows) || len(g.Data) != g.Numel() {
			return nil, nil, fmt.Errorf("%w: gradient rows of shape %v for rows of shape %v", ErrSeed, shapeOf(g), rootRows.Shape)
		}
		gV, err := newValue([]int64{int64(R), int64(h.rootDim)}, g.Data)
		if err != nil {
			return nil, nil, err
		}
		defer gV.release()
		ins := []*value{gV}
		for _, name := range h.bwdIns[1:] {
			if name != headIn {
				return nil, nil, fmt.Errorf("row head needs forward value %s", name)
			}
			ins = append(ins, inV)
		}
		gouts, err := h.bwd.cs.run(x.ro, ins, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("gradient rows of %s: %w", h.tensor, err)
		}
		_, gdata, _ := valueF32(gouts[0])
		gSite = scatterRows(len(site.Data), h.width, gdata, offs)
		releaseAll(gouts)
		if wantRoot {
			rootOffs := make([]int, R)
			for i, o := range offs {
				rootOffs[i] = o / h.width * h.rootDim
			}
			gRoot = scatterRows(numel(toInt64s(rootShape)), h.rootDim, g.Data, rootOffs)
		}
	} else if wantRoot {
		gRoot = make([]float32, numel(toInt64s(rootShape)))
	}
	var root *hooks.Tensor
	if wantRoot {
		root = &hooks.Tensor{Shape: rootShape, Data: gRoot}
	}
	return &hooks.Tensor{Shape: shape, Data: gSite}, root, nil
}

func shapeOf(t *hooks.Tensor) any {
	if t == nil {
		return "nil"
	}
	return t.Shape
}
