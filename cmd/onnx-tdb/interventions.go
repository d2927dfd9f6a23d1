package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/urfave/cli/v2"
)

// interventionFlags are the hook flags of forward and sample.
func interventionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "ablate", Usage: "POINT@LAYER[:I[:J...]]: set a slice to 0; indices address the axes after batch and token (mlp.post_act@1:7 is neuron 7 of layer 1; attn.v_out@0:2 is head 2 of layer 0); repeatable"},
		&cli.StringSliceFlag{Name: "set", Usage: "POINT@LAYER[:I...]=VALUE: set a slice to a constant; repeatable"},
		&cli.BoolFlag{Name: "allow-nonfinite", Usage: "let --set write NaN or ±Inf"},
		&cli.StringSliceFlag{Name: "add", Usage: "POINT@LAYER=FILE.npy: add a vector (shape = the point's trailing axes) at every position; repeatable"},
	}
}

// parseEditSite parses an edit target: a TDB site, the model's own name, or a
// foreign name the architecture resolves (TransformerLens's, for GPT-2),
// whose edits are made in its coordinates.
func parseEditSite(s string, m *modelctx.Transformer) (hooks.Site, []int, hooks.Coords, error) {
	var coords hooks.Coords
	site, idx, err := hooks.ParseEditTargetWith(s, func(name string) (hooks.Site, error) {
		site, c, err := m.ParseNamedSite(name)
		coords = c
		return site, err
	})
	return site, idx, coords, err
}

// parseEdits reads --ablate, --set and --add, in that order. Targets are
// TDB names, the model's own (a foreign model's hook map names) or foreign
// names (TransformerLens's hook names for GPT-2: the edit is made in TL's
// coordinates).
func parseEdits(c *cli.Context, m *modelctx.Transformer) ([]hooks.Edit, error) {
	var edits []hooks.Edit
	for _, s := range c.StringSlice("ablate") {
		site, idx, coords, err := parseEditSite(s, m)
		if err != nil {
			return nil, fmt.Errorf("--ablate %s: %w", s, err)
		}
		edits = append(edits, hooks.Edit{Site: site, Index: idx, Kind: hooks.Ablate, Coords: coords})
	}
	for _, s := range c.StringSlice("set") {
		var coords hooks.Coords
		site, idx, v, err := hooks.ParseSetSpec(s, func(name string) (hooks.Site, error) {
			site, c, err := m.ParseNamedSite(name)
			coords = c
			return site, err
		})
		if err != nil {
			return nil, fmt.Errorf("--set %s: %w", s, err)
		}
		if f := float64(v); (math.IsNaN(f) || math.IsInf(f, 0)) && !c.Bool("allow-nonfinite") {
			return nil, fmt.Errorf("--set %s: %v is not finite (give --allow-nonfinite to set it anyway)", s, v)
		}
		edits = append(edits, hooks.Edit{Site: site, Index: idx, Kind: hooks.SetTo, Value: v, Coords: coords})
	}
	for _, s := range c.StringSlice("add") {
		target, file, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--add %s: want POINT@LAYER=FILE.npy", s)
		}
		site, idx, coords, err := parseEditSite(target, m)
		if err != nil {
			return nil, fmt.Errorf("--add %s: %w", s, err)
		}
		if len(idx) > 0 {
			return nil, fmt.Errorf("--add %s: %w", s, hooks.ErrAddIndices)
		}
		shape, vec, err := npy.Read(file)
		if err != nil {
			return nil, fmt.Errorf("--add %s: %w", s, err)
		}
		if shape == nil {
			shape = []int{}
		}
		edits = append(edits, hooks.Edit{Site: site, Kind: hooks.Add, Vec: vec, VecShape: shape, Coords: coords})
	}
	return edits, nil
}

// interventionHooks builds the hooks of --ablate/--set/--add (nil when none).
func interventionHooks(c *cli.Context, m *modelctx.Transformer) (*hooks.Hooks, error) {
	edits, err := parseEdits(c, m)
	if err != nil || len(edits) == 0 {
		return nil, err
	}
	h := hooks.New()
	for _, e := range edits {
		if e.Site.Point.PerLayer() && (e.Site.Layer >= m.NLayers()) {
			return nil, fmt.Errorf("%s: layer %d out of range [0,%d)", e.Site.Point, e.Site.Layer, m.NLayers())
		}
		if !e.Site.Point.IsSAE() && !m.HasSite(e.Site) {
			return nil, fmt.Errorf("%w: %s", modelctx.ErrNoPoint, e.Site)
		}
		e.Register(h)
	}
	return h, nil
}

// commandHooks builds what --sae/--sae-replace and --ablate/--set/--add ask
// for, in that order (splices first, so edits of sae.* points find them), as
// forward options; release frees the autoencoders.
func commandHooks(c *cli.Context, m *modelctx.Transformer) (opts []modelctx.ForwardOption, release func(), err error) {
	sh, release, err := saeHooks(c, m)
	if err != nil {
		return nil, func() {}, err
	}
	if sh != nil {
		opts = append(opts, modelctx.WithHooks(sh))
	}
	hs, err := interventionHooks(c, m)
	if err != nil {
		release()
		return nil, func() {}, err
	}
	if hs != nil {
		opts = append(opts, modelctx.WithHooks(hs))
	}
	return opts, release, nil
}
