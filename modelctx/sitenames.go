package modelctx

import (
	"fmt"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// A SiteNamer resolves another library's names for a model's sites
// (TransformerLens's hook names, for the architectures that register
// one): the TDB site, and the map between TDB's values there and the
// name's, when they differ (nil: equal). Reads through a name map TDB's
// values with Coords.To; edits are made in the name's coordinates and
// mapped back.
type SiteNamer interface {
	ResolveName(name string) (hooks.Site, hooks.Coords, error)
	// IsName reports whether s is meant as one of its names (so a parser
	// can tell such names from TDB's dot paths).
	IsName(s string) bool
}

var (
	namersMu sync.RWMutex
	namers   = map[string]func(*Transformer) SiteNamer{}
)

// RegisterSiteNames makes f the SiteNamer of the models whose manifest
// names architecture arch. Architecture packages call it from init.
func RegisterSiteNames(arch string, f func(*Transformer) SiteNamer) {
	namersMu.Lock()
	defer namersMu.Unlock()
	namers[arch] = f
}

// SiteNames is the model's SiteNamer (nil when its architecture has none).
func (t *Transformer) SiteNames() SiteNamer {
	namersMu.RLock()
	f := namers[t.man.Architecture]
	namersMu.RUnlock()
	if f == nil {
		return nil
	}
	return f(t)
}

// ParseNamedSite is ParseSite that also takes the architecture's foreign
// names (blocks.1.hook_resid_pre): it returns the site and, for a foreign
// name whose values differ from TDB's, the map into its coordinates.
func (t *Transformer) ParseNamedSite(s string) (hooks.Site, hooks.Coords, error) {
	if n := t.SiteNames(); n != nil && n.IsName(s) {
		site, coords, err := n.ResolveName(s)
		if err != nil {
			return hooks.Site{}, nil, err
		}
		if !t.HasSite(site) {
			return hooks.Site{}, nil, fmt.Errorf("%w: %s (%s, model %s)", ErrNoPoint, s, site, t.man.Name)
		}
		return site, coords, nil
	}
	site, err := t.ParseSite(s)
	return site, nil, err
}

// ReadNamed returns what a foreign site name holds in a forward pass's
// output: the value captured at its TDB site, mapped into the name's
// coordinates (a TransformerLens name gives TransformerLens's values).
func (t *Transformer) ReadNamed(out *Output, name string) (*hooks.Tensor, error) {
	site, coords, err := t.ParseNamedSite(name)
	if err != nil {
		return nil, err
	}
	x, ok := out.Activations[site]
	if !ok {
		return nil, fmt.Errorf("%s (%s) was not captured", name, site)
	}
	if coords == nil {
		return x.Clone(), nil
	}
	return coords.To(x)
}
