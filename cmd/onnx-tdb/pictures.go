package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
	"github.com/onnx-tdb/onnx-tdb/viz"
	"github.com/urfave/cli/v2"
)

// pictureFlags are forward's attention pictures.
func pictureFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "attention-html", Usage: "write a self-contained HTML attention view (every layer and head of attn.qk_probs, query × key) of --attention-row here"},
		&cli.StringFlag{Name: "attention-png", Usage: "write a PNG heatmap of attn.qk_probs at --attention-layer and --attention-head of --attention-row here"},
		&cli.IntFlag{Name: "attention-layer", Usage: "layer of --attention-png"},
		&cli.IntFlag{Name: "attention-head", Usage: "head of --attention-png"},
		&cli.IntFlag{Name: "attention-row", Usage: "batch row of the attention pictures"},
	}
}

// pictures captures attn.qk_probs for the pictures forward was asked for;
// its hooks only read, so they cut nothing.
type pictures struct {
	c     *cli.Context
	probs map[hooks.Site]*hooks.Tensor
	sites []hooks.Site
}

func newPictures(c *cli.Context, m *modelctx.Transformer) (*pictures, error) {
	p := &pictures{c: c, probs: map[hooks.Site]*hooks.Tensor{}}
	html, png := c.String("attention-html"), c.String("attention-png")
	if html == "" && png == "" {
		return p, nil
	}
	if l := c.Int("attention-layer"); png != "" && (l < 0 || l >= m.NLayers()) {
		return nil, fmt.Errorf("--attention-layer %d out of range [0,%d)", l, m.NLayers())
	}
	for l := 0; l < m.NLayers(); l++ {
		s := hooks.Site{Point: hooks.Attn.QKProbs, Layer: l}
		if !m.HasSite(s) {
			return nil, fmt.Errorf("attention pictures: %w: %s", modelctx.ErrNoPoint, s)
		}
		if html != "" || l == c.Int("attention-layer") {
			p.sites = append(p.sites, s)
		}
	}
	return p, nil
}

// options are the forward options that capture what the pictures need.
func (p *pictures) options() []modelctx.ForwardOption {
	if len(p.sites) == 0 {
		return nil
	}
	h := hooks.New()
	for _, s := range p.sites {
		s := s
		h.Observe(s.Point, func(_ *hooks.Context, x *hooks.Tensor) error {
			p.probs[s] = x.Clone()
			return nil
		}, hooks.AtLayers(s.Layer), hooks.Trusted())
	}
	return []modelctx.ForwardOption{modelctx.WithHooks(h)}
}

// write draws the pictures of the row's tokens (padded positions as <pad>).
func (p *pictures) write(rows [][]int, side modelctx.PadSide, tok tokenizer.Tokenizer) error {
	if len(p.sites) == 0 {
		return nil
	}
	row := p.c.Int("attention-row")
	if row < 0 || row >= len(rows) {
		return fmt.Errorf("--attention-row %d out of range [0,%d)", row, len(rows))
	}
	batch := modelctx.PadRows(rows, side)
	labels := make([]string, len(batch.Tokens[row]))
	for i, id := range batch.Tokens[row] {
		switch {
		case batch.Pad[row][i]:
			labels[i] = "<pad>"
		case tok != nil:
			labels[i], _ = tok.DecodeToken(id)
		default:
			labels[i] = fmt.Sprint(id)
		}
	}
	if f := p.c.String("attention-html"); f != "" {
		a := viz.Attention{Title: fmt.Sprintf("attention, row %d", row), Tokens: labels, Row: row, Probs: map[int]*hooks.Tensor{}}
		for s, t := range p.probs {
			a.Probs[s.Layer] = t
		}
		if err := writeFileAtomic(f, func(w io.Writer) error { return viz.WriteAttentionHTML(w, a) }); err != nil {
			return fmt.Errorf("--attention-html: %w", err)
		}
	}
	if f := p.c.String("attention-png"); f != "" {
		l, h := p.c.Int("attention-layer"), p.c.Int("attention-head")
		t := p.probs[hooks.Site{Point: hooks.Attn.QKProbs, Layer: l}]
		title := fmt.Sprintf("attn.qk_probs layer %d head %d row %d", l, h, row)
		if err := writeFileAtomic(f, func(w io.Writer) error {
			_, err := viz.WriteAttentionPNG(w, t, row, h, labels, viz.HeatmapOptions{Title: title})
			return err
		}); err != nil {
			return fmt.Errorf("--attention-png: %w", err)
		}
	}
	return nil
}

// writeFileAtomic writes through a temporary sibling renamed when complete.
func writeFileAtomic(path string, fill func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = fill(tmp); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
