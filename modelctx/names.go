package modelctx

import (
	"fmt"
	"strings"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// Aliases maps the model's own point names ("mlp_hidden@1", "final_norm")
// to the hook sites they stand for; empty for models exported from a TDB
// checkpoint, whose points already carry TDB's names.
func (t *Transformer) Aliases() map[string]hooks.Site {
	m, err := t.man.SiteAliases()
	if err != nil {
		return map[string]hooks.Site{}
	}
	return m
}

// ParseSite parses "POINT@LAYER" or "POINT" (once points), where POINT is a
// TDB dot path (mlp.post_act) or one of the model's own names (mlp_hidden).
// A site the model does not carry gives ErrNoPoint.
func (t *Transformer) ParseSite(s string) (hooks.Site, error) {
	if site, ok := t.Aliases()[s]; ok {
		if !t.HasSite(site) {
			return hooks.Site{}, fmt.Errorf("%w: %s (%s, model %s)", ErrNoPoint, s, site, t.man.Name)
		}
		return site, nil
	}
	site, err := hooks.ParseSite(s)
	if err != nil {
		name, _, _ := strings.Cut(s, "@")
		for _, a := range t.man.Aliases {
			if a.Name == name && a.Point == "" {
				return hooks.Site{}, fmt.Errorf("%w: %s has no TDB hook point in model %s", ErrNoPoint, s, t.man.Name)
			}
		}
		return hooks.Site{}, err
	}
	if site.Point.PerLayer() && site.Layer >= t.NLayers() {
		return hooks.Site{}, fmt.Errorf("%s: layer %d out of range [0,%d)", s, site.Layer, t.NLayers())
	}
	if !site.Point.IsSAE() && !t.HasSite(site) {
		return hooks.Site{}, fmt.Errorf("%w: %s (model %s)", ErrNoPoint, site, t.man.Name)
	}
	return site, nil
}

// Tokenizer is the model's tokenizer, from its architecture plugin, or
// ErrNoTokenizer when the model is driven by token ids only.
func (t *Transformer) Tokenizer() (tokenizer.Tokenizer, error) { return t.tok.get(t.dir, t.man) }

// lazyTokenizer opens a model's tokenizer on first use and keeps it (a
// tokenizer.json is parsed once per model, not once per call).
type lazyTokenizer struct {
	once sync.Once
	tok  tokenizer.Tokenizer
	err  error
}

func (l *lazyTokenizer) get(dir string, m *export.Manifest) (tokenizer.Tokenizer, error) {
	l.once.Do(func() { l.tok, l.err = openTokenizer(dir, m) })
	return l.tok, l.err
}

// openTokenizer asks the model's architecture for its tokenizer.
func openTokenizer(dir string, m *export.Manifest) (tokenizer.Tokenizer, error) {
	tok, err := export.OpenTokenizer(dir, m)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	if tok == nil {
		return nil, fmt.Errorf("%w (model %s)", ErrNoTokenizer, m.Name)
	}
	return tok, nil
}
