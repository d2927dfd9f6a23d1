package tlnames

import (
	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// Architecture is the manifest architecture whose models take these names.
const Architecture = gpt2.Name

func init() {
	modelctx.RegisterSiteNames(Architecture, func(t *modelctx.Transformer) modelctx.SiteNamer { return ForModel(t) })
}

// Namer is the modelctx.SiteNamer of one GPT-2 model: TL names with TL's
// default processing (what from_pretrained gives a TL user), and, through
// SAEResolver, with the processing an SAE's training had.
type Namer struct{ r *resolver }

// ForModel is the Namer of a GPT-2 model; it reads the weights it needs
// from the model when a name first needs them.
func ForModel(t *modelctx.Transformer) *Namer {
	cfg := t.Manifest().Config
	m := Model{NLayers: t.NLayers(), NHeads: cfg.NHeads, DHead: cfg.DHead, DModel: cfg.DModel, Weights: modelWeights{t}}
	return &Namer{r: &resolver{m: m, bias: map[biasKey][]float32{}}}
}

// ResolveName resolves a TL name with TL's default processing.
func (n *Namer) ResolveName(name string) (hooks.Site, hooks.Coords, error) {
	site, m, err := n.r.resolve(name, sae.DefaultProcessing)
	if err != nil {
		return hooks.Site{}, nil, err
	}
	if m.Identity() {
		return site, nil, nil
	}
	return site, m.Coords(), nil
}

// IsName reports whether s is a TL hook name.
func (n *Namer) IsName(s string) bool { return IsName(s) }

// SAEResolver resolves TL names with an SAE's own processing.
func (n *Namer) SAEResolver() sae.Resolver { return n.r.resolve }

// modelWeights reads checkpoint tensors through a model context opened for
// the read.
type modelWeights struct{ t *modelctx.Transformer }

func (w modelWeights) Tensor(key string) (*hooks.Tensor, error) {
	mc, err := w.t.ModelContext()
	if err != nil {
		return nil, err
	}
	defer mc.Close()
	return mc.Tensor(key)
}
