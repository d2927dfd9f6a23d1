package serve

import (
	"errors"
	"fmt"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// editRequest holds the hook edits of a request, in the CLI's syntax:
// "ablate": ["mlp.post_act@1:7"], "set": ["mlp.pre_act@2:5=1.5"], "add":
// [{"site": "resid.torso.delta_attn@0", "vector": [...]}], "sae":
// ["mlp.post_act@1=NAME"] with NAME a loaded autoencoder.
type editRequest struct {
	Ablate     []string  `json:"ablate,omitempty"`
	Set        []string  `json:"set,omitempty"`
	Add        []addEdit `json:"add,omitempty"`
	SAE        []string  `json:"sae,omitempty"`
	SAEReplace bool      `json:"sae_replace,omitempty"`
}

type addEdit struct {
	Site   string    `json:"site"`
	Vector []float32 `json:"vector"`
}

// parseEdits reads ablate, set and add, in that order, as the CLI does;
// the messages are the CLI's with the field's name for the flag's.
func parseEdits(req editRequest, m *modelctx.Transformer) ([]hooks.Edit, error) {
	var edits []hooks.Edit
	for _, s := range req.Ablate {
		site, idx, err := hooks.ParseEditTargetWith(s, m.ParseSite)
		if err != nil {
			return nil, fmt.Errorf("ablate %s: %w", s, err)
		}
		edits = append(edits, hooks.Edit{Site: site, Index: idx, Kind: hooks.Ablate})
	}
	for _, s := range req.Set {
		site, idx, v, err := hooks.ParseSetSpec(s, m.ParseSite)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s, err)
		}
		edits = append(edits, hooks.Edit{Site: site, Index: idx, Kind: hooks.SetTo, Value: v})
	}
	for _, a := range req.Add {
		site, idx, err := hooks.ParseEditTargetWith(a.Site, m.ParseSite)
		if err != nil {
			return nil, fmt.Errorf("add %s: %w", a.Site, err)
		}
		if len(idx) > 0 {
			return nil, fmt.Errorf("add %s: %w", a.Site, hooks.ErrAddIndices)
		}
		if len(a.Vector) == 0 {
			return nil, fmt.Errorf("add %s: empty vector", a.Site)
		}
		edits = append(edits, hooks.Edit{Site: site, Kind: hooks.Add, Vec: a.Vector})
	}
	for _, e := range edits {
		if e.Site.Point.PerLayer() && e.Site.Layer >= m.NLayers() {
			return nil, fmt.Errorf("%s: layer %d out of range [0,%d)", e.Site.Point, e.Site.Layer, m.NLayers())
		}
		if !e.Site.Point.IsSAE() && !m.HasSite(e.Site) {
			return nil, fmt.Errorf("%w: %s", modelctx.ErrNoPoint, e.Site)
		}
	}
	return edits, nil
}

// editHooks builds the splices and the edits of a request as forward
// options: splices first, so that edits of sae.* points find them.
func (s *Server) editHooks(req editRequest, m *modelctx.Transformer) ([]modelctx.ForwardOption, error) {
	var opts []modelctx.ForwardOption
	spliced := map[int]bool{}
	if len(req.SAE) > 0 {
		h := hooks.New()
		for _, spec := range req.SAE {
			site, ae, err := s.spliceTarget(spec, m)
			if err != nil {
				return nil, badRequest(err)
			}
			sae.Splice(h, ae, site, !req.SAEReplace)
			spliced[site.Layer] = true
		}
		opts = append(opts, modelctx.WithHooks(h))
	} else if req.SAEReplace {
		return nil, badRequest(errors.New("sae_replace without sae"))
	}
	edits, err := parseEdits(req, m)
	if err != nil {
		return nil, badRequest(err)
	}
	if len(edits) > 0 {
		h := hooks.New()
		for _, e := range edits {
			if e.Site.Point.IsSAE() && !spliced[e.Site.Layer] {
				return nil, badRequest(fmt.Errorf("%s: no autoencoder is spliced at layer %d (add \"sae\": [\"POINT@%d=NAME\"])", e.Site, e.Site.Layer, e.Site.Layer))
			}
			e.Register(h)
		}
		opts = append(opts, modelctx.WithHooks(h))
	}
	return opts, nil
}

// spliceTarget reads "POINT@LAYER=NAME".
func (s *Server) spliceTarget(spec string, m *modelctx.Transformer) (hooks.Site, *sae.Autoencoder, error) {
	at, name, ok := strings.Cut(spec, "=")
	if !ok || name == "" {
		return hooks.Site{}, nil, fmt.Errorf("sae %s: want POINT@LAYER=NAME (a loaded autoencoder)", spec)
	}
	site, err := s.saeSite(at, m)
	if err != nil {
		return hooks.Site{}, nil, fmt.Errorf("sae %w", err)
	}
	ae, err := s.autoencoder(name, m, site)
	if err != nil {
		return hooks.Site{}, nil, fmt.Errorf("sae %s: %w", spec, err)
	}
	return site, ae, nil
}

// saeSite reads POINT@LAYER and checks that the model has it.
func (s *Server) saeSite(at string, m *modelctx.Transformer) (hooks.Site, error) {
	site, err := m.ParseSite(at)
	if err != nil {
		return hooks.Site{}, err
	}
	if site.Point.IsSAE() || !site.Point.PerLayer() {
		return hooks.Site{}, fmt.Errorf("%s: an autoencoder reads a per-layer point of the model (mlp.post_act@L, resid.torso.delta_mlp@L, resid.torso.delta_attn@L)", at)
	}
	if site.Layer >= m.NLayers() {
		return hooks.Site{}, fmt.Errorf("%s: layer %d out of range [0,%d)", at, site.Layer, m.NLayers())
	}
	if !m.HasSite(site) {
		return hooks.Site{}, fmt.Errorf("%w: %s", modelctx.ErrNoPoint, site)
	}
	return site, nil
}

// autoencoder finds a loaded autoencoder and checks that it fits the site.
func (s *Server) autoencoder(name string, m *modelctx.Transformer, site hooks.Site) (*sae.Autoencoder, error) {
	ae, ok := s.saes[name]
	if !ok {
		return nil, fmt.Errorf("no autoencoder %q is loaded (loaded: %s)", name, strings.Join(s.saeNames, ", "))
	}
	if w := pointWidth(m, site.Point); w > 0 && w != ae.NInputs {
		return nil, fmt.Errorf("%s has width %d, the autoencoder takes %d inputs", site, w, ae.NInputs)
	}
	return ae, nil
}
