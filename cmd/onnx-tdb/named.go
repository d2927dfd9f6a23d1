package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/urfave/cli/v2"
)

// isForeignName reports whether s is one of the model's foreign site names
// (TransformerLens's, for GPT-2).
func isForeignName(m *modelctx.Transformer, s string) bool {
	n := m.SiteNames()
	return n != nil && n.IsName(s)
}

// namedPoints are the foreign names in --points.
func namedPoints(c *cli.Context, m *modelctx.Transformer) []string {
	var out []string
	for _, s := range strings.Split(c.String("points"), ",") {
		if s = strings.TrimSpace(s); isForeignName(m, s) {
			out = append(out, s)
		}
	}
	return out
}

// addNamedSites captures the TDB sites of the foreign names in --points.
func addNamedSites(c *cli.Context, m *modelctx.Transformer, f *modelctx.Filter) error {
	for _, name := range namedPoints(c, m) {
		site, _, err := m.ParseNamedSite(name)
		if err != nil {
			return fmt.Errorf("--points: %w", err)
		}
		f.Points = append(f.Points, site.Point)
		if f.Layers != nil && site.Point.PerLayer() {
			f.Layers = append(f.Layers, site.Layer)
		}
	}
	return nil
}

// saveNamed writes each foreign name of --points as <name>.npy, in the
// name's own coordinates (TransformerLens's values for a TL name).
func saveNamed(c *cli.Context, m *modelctx.Transformer, dir string, out *modelctx.Output) error {
	for _, name := range namedPoints(c, m) {
		v, err := m.ReadNamed(out, name)
		if err != nil {
			return err
		}
		if err := npy.Write(filepath.Join(dir, name+".npy"), v.Shape, v.Data); err != nil {
			return err
		}
	}
	return nil
}
