package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/analysis"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/urfave/cli/v2"
)

// Shared pieces of the research-workflow commands (patch, lens, dla).

// encodeText tokenizes a prompt with no BOS token, as TDB does. Every
// workflow command tokenizes through here.
func encodeText(m *modelctx.Transformer, s string) ([]int, error) {
	tok, err := modelTokenizer(m)
	if err != nil {
		return nil, err
	}
	return tok.Encode(s), nil
}

// tokenFlag parses a --target/--distractor value ("#ID" or one token's text).
func tokenFlag(m *modelctx.Transformer, name, spec string) (int, error) {
	enc := func(s string) ([]int, error) { return encodeText(m, s) }
	if _, err := modelTokenizer(m); err != nil {
		enc = nil
	}
	id, err := analysis.ParseToken(spec, m.Manifest().Config.NVocab, enc)
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", name, err)
	}
	return id, nil
}

// promptFlag tokenizes a text flag that must be non-empty.
func promptFlag(c *cli.Context, m *modelctx.Transformer, name string) ([]int, error) {
	s := c.String(name)
	if s == "" {
		return nil, fmt.Errorf("--%s is required", name)
	}
	ids, err := encodeText(m, s)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", name, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("--%s: no tokens", name)
	}
	return ids, nil
}

// parsePoint reads --point: a point to sweep over every layer (a TDB dot
// path such as resid.torso.post_mlp, or any name the model reads, such as a
// TransformerLens name blocks.3.hook_resid_post, which names a TDB point and
// whose layer is then ignored), or POINT@LAYER for one layer. It returns
// the layers named (nil: all). Patches are made in TDB's values at the
// point the name maps to.
func parsePoint(m *modelctx.Transformer, s string) (hooks.Point, []int, error) {
	if s == "" {
		return 0, nil, fmt.Errorf("--point is required")
	}
	if strings.Contains(s, "@") {
		site, _, err := m.ParseNamedSite(s)
		if err != nil {
			return 0, nil, fmt.Errorf("--point: %w", err)
		}
		if site.Point.PerLayer() {
			return site.Point, []int{site.Layer}, nil
		}
		return site.Point, nil, nil
	}
	if p, err := hooks.Parse(s); err == nil {
		return p, nil, nil
	}
	site, _, err := m.ParseNamedSite(s)
	if err != nil {
		return 0, nil, fmt.Errorf("--point: %w", err)
	}
	return site.Point, nil, nil
}

// printJSON writes v as indented JSON.
func printJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// tokenTexts decodes each token for table headings (ids where the model
// has no tokenizer).
func tokenTexts(m *modelctx.Transformer, ids []int) []string {
	out := make([]string, len(ids))
	tok, err := modelTokenizer(m)
	for i, id := range ids {
		out[i] = "#" + strconv.Itoa(id)
		if err == nil {
			if s, err := tok.DecodeToken(id); err == nil {
				out[i] = strconv.Quote(s)
			}
		}
	}
	return out
}

// withAnalysis opens --model with analyses over it and calls fn.
func withAnalysis(c *cli.Context, fn func(*analysis.Model) error) error {
	t, err := openModel(c)
	if err != nil {
		return err
	}
	defer t.Close()
	m, err := analysis.New(t)
	if err != nil {
		return err
	}
	defer m.Close()
	return fn(m)
}
