package main

import (
	"fmt"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
	"github.com/urfave/cli/v2"
)

// saeResolver is the model's resolver of an SAE's foreign site names (nil
// when its architecture registers none).
func saeResolver(m *modelctx.Transformer) sae.Resolver {
	type saeResolving interface{ SAEResolver() sae.Resolver }
	if r, ok := m.SiteNames().(saeResolving); ok {
		return r.SAEResolver()
	}
	return nil
}

// splitSAESpec splits "POINT@LAYER=AUTOENCODER" (POINT may be a foreign
// name) from a plain "AUTOENCODER": the part before the first '=' is a site
// when the model parses it as one.
func splitSAESpec(s string, m *modelctx.Transformer) (site, ref string) {
	at, rest, ok := strings.Cut(s, "=")
	if !ok {
		return "", s
	}
	if _, _, err := m.ParseNamedSite(at); err == nil || strings.Contains(at, "@") {
		return at, rest
	}
	if n := m.SiteNames(); n != nil && n.IsName(at) {
		return at, rest
	}
	return "", s
}

// explicitBinding parses an explicit site: a TDB site, or a foreign name
// resolved with its default processing.
func explicitBinding(s string, m *modelctx.Transformer) (sae.Binding, error) {
	if n := m.SiteNames(); n != nil && n.IsName(s) {
		if r := saeResolver(m); r != nil {
			site, sm, err := r(s, sae.DefaultProcessing)
			if err != nil {
				return sae.Binding{}, err
			}
			b := sae.Binding{In: site, Out: site, InMap: sm, OutMap: sm, Layer: max(site.Layer, 0)}
			if l := layerOfName(s); l >= 0 {
				b.Layer = l
			}
			return b, nil
		}
	}
	site, err := parseSAESite(s, m)
	if err != nil {
		return sae.Binding{}, err
	}
	return sae.PlainBinding(site), nil
}

// layerOfName is L of a "blocks.L.…" name, -1 otherwise.
func layerOfName(s string) int {
	var l int
	if _, err := fmt.Sscanf(s, "blocks.%d.", &l); err != nil {
		return -1
	}
	return l
}

// bindSAE opens an autoencoder and decides where it splices: at its own
// site (a SAELens SAE's cfg.json), which an explicit site must agree with,
// or at the explicit site.
func bindSAE(c *cli.Context, m *modelctx.Transformer, ref, at string) (*sae.Autoencoder, sae.Binding, error) {
	var exp *sae.Binding
	layer := -1
	if at != "" {
		b, err := explicitBinding(at, m)
		if err != nil {
			return nil, sae.Binding{}, err
		}
		exp, layer = &b, b.In.Layer
	}
	if exp != nil {
		if _, input, err := sae.Resolve(ref, layer); err == nil && input != "" && input.Point() != exp.In.Point {
			return nil, sae.Binding{}, fmt.Errorf("autoencoder %s reads %s, not %s", ref, input.Point(), exp.In.Point)
		}
	}
	ae, input, err := openSAERef(c, ref, layer)
	if err != nil {
		return nil, sae.Binding{}, err
	}
	fail := func(err error) (*sae.Autoencoder, sae.Binding, error) {
		ae.Close()
		return nil, sae.Binding{}, err
	}
	var b sae.Binding
	switch {
	case ae.Site() != nil && ae.Site().HookName != "":
		if b, err = sae.Bind(ae, saeResolver(m), m.NLayers()); err != nil {
			return fail(err)
		}
		if exp != nil && exp.In != b.In {
			return fail(fmt.Errorf("%w: %s is %s, but %s reads %s (%s)", sae.ErrSiteConflict, at, exp.In, ref, ae.Site().HookName, b.In))
		}
	case exp != nil:
		b = *exp
	default:
		return fail(fmt.Errorf("%s names no site: want POINT@LAYER=AUTOENCODER (or --at POINT@LAYER)", ref))
	}
	if input != "" && input.Point() != b.In.Point {
		return fail(fmt.Errorf("autoencoder %s reads %s, not %s", ref, input.Point(), b.In.Point))
	}
	for _, s := range []struct {
		site  hooks.Site
		width int
	}{{b.In, ae.NInputs}, {b.Out, ae.NOutputs()}} {
		if !m.HasSite(s.site) {
			return fail(fmt.Errorf("%w: %s", modelctx.ErrNoPoint, s.site))
		}
		if w := trailingWidth(m, s.site.Point); w > 0 && w != s.width {
			return fail(fmt.Errorf("%s has width %d, the autoencoder takes %d inputs", s.site, w, s.width))
		}
	}
	return ae, b, nil
}

// trailingWidth is the number of values per token at a point (0: unknown).
func trailingWidth(m *modelctx.Transformer, p hooks.Point) int {
	cfg := m.Manifest().Config
	w := 1
	for _, d := range p.Shape()[2:] {
		switch d {
		case hooks.FF:
			w *= cfg.DFF
		case hooks.Model:
			w *= cfg.DModel
		case hooks.HeadDim:
			w *= cfg.DHead
		case hooks.Heads:
			w *= cfg.NHeads
		case hooks.One:
		default:
			return 0
		}
	}
	return w
}
