package export_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// toy is an architecture in a few lines: a bigram model whose logits are
// the token's embedding times an unembedding, with one hook point between.
type toy struct{}

func (toy) Name() string { return "toy-bigram" }

// Open refuses every folder: toy models are made in code (toySource).
func (toy) Open(dir string) (export.Source, error) {
	return nil, fmt.Errorf("%w: %s", export.ErrNotMine, dir)
}

// toySource is a checkpoint of the toy architecture: 4 tokens, width 2.
type toySource struct{}

func (toySource) Architecture() string { return "toy-bigram" }
func (toySource) Describe() string     { return "toy bigram weights" }

// Build writes the weights, one stage graph with the hook points as named
// tensors, and the manifest fields the engine reads.
func (toySource) Build(ctx context.Context, b *export.Builder) error {
	const V, D = 4, 2
	emb := []float32{1, 0, 0, 1, 1, 1, -1, 0}   // [V, D]
	unemb := []float32{1, 0, 2, -1, 0, 1, 0, 3} // [D, V], ready for MatMul
	if err := b.AddWeight("emb", "emb", emb, []int64{V, D}, false); err != nil {
		return err
	}
	if err := b.AddWeight("unemb", "unemb", unemb, []int64{D, V}, false); err != nil {
		return err
	}
	w, err := b.Weights()
	if err != nil {
		return err
	}
	g := graphs.NewBuilder("toy")
	tokens := g.Input(graphs.InTokens, graphs.Int64, "B", "T")
	e, _ := w.Ref(g, "emb", V, D)
	u, _ := w.Ref(g, "unemb", D, V)
	x := g.Op("Gather", graphs.PointTensor(hooks.ResidPostEmb, -1), []string{e, tokens}, graphs.AttrInt("axis", 0))
	g.Type(x, graphs.Float, "B", "T", "2")
	g.Op("MatMul", graphs.OutLogits, []string{x, u})
	g.Output(graphs.OutLogits, graphs.Float, "B", "T", "4")
	if err := b.AddStage("toy", g.Model()); err != nil {
		return err
	}
	m := b.Manifest()
	m.Config = export.Dims{NLayers: 0, DModel: D, NVocab: V, NCtx: 16}
	m.Inputs = export.IO{Tokens: graphs.InTokens, Logits: graphs.OutLogits}
	b.AddPoint(hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}, graphs.PointTensor(hooks.ResidPostEmb, -1))
	b.AddPoint(hooks.Site{Point: hooks.LogitsPoint, Layer: -1}, graphs.OutLogits)
	return nil
}

// Example_architecture adds an architecture: register it, export a
// checkpoint through it, and open the export like any model — hooks work on
// its points with no change to the engine.
func Example_architecture() {
	export.Register(toy{})
	dir, _ := os.MkdirTemp("", "toy")
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "toy")
	if _, err := export.Write(context.Background(), toySource{}, out, export.WriteOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	m, err := modelctx.Open(out)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	h := hooks.New()
	h.Add(hooks.Resid.PostEmb, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		x.Data[0] = 0 // first channel of the first token
		return x, nil
	})
	plain, _ := m.Forward(context.Background(), [][]int{{0, 2}})
	edited, _ := m.Forward(context.Background(), [][]int{{0, 2}}, modelctx.WithHooks(h))
	fmt.Println(m.Manifest().Architecture, plain.Logits.Data[:4], edited.Logits.Data[:4])
	// Output: toy-bigram [1 0 2 -1] [0 0 0 0]
}
