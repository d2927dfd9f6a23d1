package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
	"github.com/urfave/cli/v2"
)

// lossFlags are the flags of grad and attribute that say what to
// differentiate and how.
func lossFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "target", Usage: "B,POS,TOKEN: batch row (or all), position (or last: the row's last real token) and target token (an id, or a text that is one token; several joined by +)"},
		&cli.StringFlag{Name: "loss", Value: "logit", Usage: "logit | logit-diff | logit-minus-mean | probs | zero | activation"},
		&cli.StringSliceFlag{Name: "distractor", Usage: "distractor token of --loss logit-diff (id or one-token text; repeatable)"},
		&cli.StringFlag{Name: "grab", Usage: "POINT@LAYER[:I...]: the activation of --loss activation, at row and position B,POS of --target (mlp.post_act@1:7 is neuron 7)"},
		&cli.StringFlag{Name: "detach", Usage: "stop gradients, comma-separated: ln-scale (every LayerNorm scale), qkv (attn.q/k/v), or POINT[@LAYER] sites"},
		&cli.StringSliceFlag{Name: "ablate-grad", Usage: "POINT@LAYER[:I...]: zero the gradient of a slice as it passes (a bwd hook); repeatable"},
	}
}

func gradCommand() *cli.Command {
	return &cli.Command{
		Name:  "grad",
		Usage: "run a backward pass from a loss and write the gradient at every hook point",
		Description: `The loss is one of the original's: the logit of TOKEN at row B and position
POS (--loss logit, the default), the mean target logit minus the mean
distractor logit (logit-diff), minus the mean logit (logit-minus-mean), the
summed target probability (probs), zero (only gradients written by hooks
flow), or one activation (--loss activation --grab POINT@LAYER:I...).
--save-grads writes d(loss)/d(value) at each selected point with the names of
forward --save-activations: <dot path>.L<layer>.npy, <dot path>.npy.`,
		Flags: append(append(append([]cli.Flag{modelFlag()}, inputFlags()...), lossFlags()...),
			append([]cli.Flag{
				&cli.StringFlag{Name: "points", Usage: "hook points whose gradient to keep, comma-separated dot paths (default all)"},
				&cli.StringFlag{Name: "layers", Usage: "layers to keep, comma-separated (default all)"},
				&cli.StringFlag{Name: "save-grads", Usage: "write the gradients here as .npy files"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"},
			}, append(interventionFlags(), saeFlags()...)...)...),
		Action: runGrad,
	}
}

func attributeCommand() *cli.Command {
	return &cli.Command{
		Name:  "attribute",
		Usage: "rank the entries of a hook point by activation × gradient of a loss",
		Description: `For every layer of --point, the entries (position and the point's own axes,
a neuron of mlp.post_act, a key and head of attn.qk_probs, ...) of row B of
--target whose activation × d(loss)/d(activation) is largest: a first-order
estimate of how much each raises the loss. --abs ranks by magnitude.`,
		Flags: append(append(append([]cli.Flag{modelFlag()}, inputFlags()...), lossFlags()...),
			append([]cli.Flag{
				&cli.StringFlag{Name: "points", Aliases: []string{"point"}, Value: "mlp.post_act", Usage: "hook point to attribute"},
				&cli.StringFlag{Name: "layers", Usage: "layers, comma-separated (default all)"},
				countFlag("top", []string{"k"}, 10, 0, maxListed, "entries to print per layer"),
				&cli.BoolFlag{Name: "abs", Usage: "rank by |activation × gradient|"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"},
			}, append(interventionFlags(), saeFlags()...)...)...),
		Action: runAttribute,
	}
}

// tokenID reads a token id, or a text that is exactly one token.
func tokenID(s string, tok tokenizer.Tokenizer) (int, error) {
	if id, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		return id, nil
	}
	if tok == nil {
		return 0, fmt.Errorf("token %q is not an id and the model has no tokenizer", s)
	}
	ids := tok.Encode(s)
	if len(ids) != 1 {
		return 0, fmt.Errorf("%q is %s, not one", s, plural(len(ids), "token"))
	}
	return ids[0], nil
}

// target is --target parsed.
type target struct {
	row    int // -1: every row
	pos    int // -1: each row's last real position
	tokens []int
}

func parseTarget(c *cli.Context, tok tokenizer.Tokenizer, needToken bool) (target, error) {
	s := c.String("target")
	if s == "" {
		return target{}, fmt.Errorf("--target B,POS,TOKEN is required")
	}
	parts := strings.SplitN(s, ",", 3)
	if len(parts) < 2 || (needToken && len(parts) < 3) {
		return target{}, fmt.Errorf("--target %q: want B,POS,TOKEN", s)
	}
	t := target{row: -1, pos: -1}
	if b := strings.TrimSpace(parts[0]); b != "all" {
		v, err := strconv.Atoi(b)
		if err != nil || v < 0 {
			return t, fmt.Errorf("--target %q: row %q is not a row index or all", s, b)
		}
		t.row = v
	}
	if p := strings.TrimSpace(parts[1]); p != "last" && p != "-1" {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return t, fmt.Errorf("--target %q: position %q is not a position or last", s, p)
		}
		t.pos = v
	}
	if len(parts) == 3 {
		for _, ts := range strings.Split(parts[2], "+") {
			id, err := tokenID(ts, tok)
			if err != nil {
				return t, fmt.Errorf("--target %q: %w", s, err)
			}
			t.tokens = append(t.tokens, id)
		}
	}
	return t, nil
}

// parseLoss builds the loss of --loss, --target, --distractor and --grab.
func parseLoss(c *cli.Context, m *modelctx.Transformer) (modelctx.Loss, target, error) {
	tok, _ := modelTokenizer(m)
	kind := c.String("loss")
	t, err := parseTarget(c, tok, kind != "zero" && kind != "activation")
	if err != nil {
		return modelctx.Loss{}, t, err
	}
	if len(c.StringSlice("distractor")) > 0 && kind != "logit-diff" {
		return modelctx.Loss{}, t, fmt.Errorf("--distractor goes with --loss logit-diff")
	}
	if c.String("grab") != "" && kind != "activation" {
		return modelctx.Loss{}, t, fmt.Errorf("--grab goes with --loss activation")
	}
	l := modelctx.Loss{Targets: t.tokens, Position: t.pos}
	if t.row >= 0 {
		l.Rows = []int{t.row}
	}
	switch kind {
	case "logit":
		if len(t.tokens) != 1 {
			return l, t, fmt.Errorf("--loss logit takes one target token, got %d (use logit-diff for a mean)", len(t.tokens))
		}
		l.Kind = modelctx.LossLogitDiff
	case "logit-diff":
		l.Kind = modelctx.LossLogitDiff
		for _, d := range c.StringSlice("distractor") {
			id, err := tokenID(d, tok)
			if err != nil {
				return l, t, fmt.Errorf("--distractor: %w", err)
			}
			l.Distractors = append(l.Distractors, id)
		}
	case "logit-minus-mean":
		l.Kind = modelctx.LossLogitMinusMean
	case "probs":
		l.Kind = modelctx.LossProbs
	case "zero":
		l = modelctx.ZeroLoss()
	case "activation":
		g := c.String("grab")
		if g == "" {
			return l, t, fmt.Errorf("--loss activation needs --grab POINT@LAYER[:I...]")
		}
		site, idx, err := hooks.ParseEditTargetWith(g, m.ParseSite)
		if err != nil {
			return l, t, fmt.Errorf("--grab %s: %w", g, err)
		}
		if t.row < 0 || t.pos < 0 {
			return l, t, fmt.Errorf("--loss activation needs a row and a position in --target B,POS")
		}
		if want := len(site.Point.Shape()) - 2; len(idx) != want {
			return l, t, fmt.Errorf("--grab %s: %s needs %d indices after batch and token (%v)", g, site.Point, want, site.Point.Shape()[2:])
		}
		l = modelctx.ActivationLoss(site, append([]int{t.row, t.pos}, idx...)...)
	default:
		return l, t, fmt.Errorf("--loss %q: want logit, logit-diff, logit-minus-mean, probs, zero or activation", kind)
	}
	return l, t, nil
}

// backwardOptions gathers --pad, --detach, --ablate-grad, --sae and the
// intervention flags; release closes the spliced autoencoders.
func backwardOptions(c *cli.Context, m *modelctx.Transformer) (opts []modelctx.BackwardOption, release func(), err error) {
	side, err := modelctx.ParsePadSide(c.String("pad"))
	if err != nil {
		return nil, func() {}, err
	}
	sh, release, err := saeHooks(c, m)
	if err != nil {
		return nil, func() {}, err
	}
	defer func() {
		if err != nil {
			release()
			release = func() {}
		}
	}()
	opts = []modelctx.BackwardOption{modelctx.WithPad(side)}
	if sh != nil {
		opts = append(opts, modelctx.WithHooks(sh))
	}
	if d := c.String("detach"); d != "" {
		for _, s := range strings.Split(d, ",") {
			switch s = strings.TrimSpace(s); s {
			case "ln-scale":
				opts = append(opts, modelctx.DetachLayerNormScale())
			case "qkv":
				opts = append(opts, modelctx.DetachQKV())
			default:
				sites, err := parseSites(s, m)
				if err != nil {
					return nil, release, fmt.Errorf("--detach: %w", err)
				}
				opts = append(opts, modelctx.StopGradient(sites...))
			}
		}
	}
	hs, err := interventionHooks(c, m)
	if err != nil {
		return nil, release, err
	}
	if hs != nil {
		opts = append(opts, modelctx.WithHooks(hs))
	}
	if abl := c.StringSlice("ablate-grad"); len(abl) > 0 {
		h := hooks.New()
		for _, s := range abl {
			site, idx, err := hooks.ParseEditTargetWith(s, m.ParseSite)
			if err != nil {
				return nil, release, fmt.Errorf("--ablate-grad %s: %w", s, err)
			}
			if site.Point.IsSAE() && sh == nil {
				return nil, release, fmt.Errorf("--ablate-grad %s: no autoencoder is spliced in (add --sae POINT@%d=AUTOENCODER)", s, site.Layer)
			}
			if !site.Point.IsSAE() && !m.HasSite(site) {
				return nil, release, fmt.Errorf("--ablate-grad %s: %w", s, modelctx.ErrNoPoint)
			}
			var o []hooks.Option
			if site.Point.PerLayer() {
				o = append(o, hooks.AtLayers(site.Layer))
			}
			h.Add(site.Point, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
				return x, x.FillTrailing(0, idx...)
			}, append(o, hooks.InStage(hooks.Bwd))...)
		}
		opts = append(opts, modelctx.WithHooks(h))
	}
	return opts, release, nil
}

// parseSites reads POINT (every layer of a per-layer point) or POINT@LAYER.
func parseSites(s string, m *modelctx.Transformer) ([]hooks.Site, error) {
	if isForeignName(m, s) {
		// A TransformerLens name: stopping the gradient there is stopping it
		// at its TDB site (the two differ by an affine map).
		site, _, err := m.ParseNamedSite(s)
		return []hooks.Site{site}, err
	}
	if !strings.Contains(s, "@") {
		p, err := hooks.Parse(s)
		if err != nil {
			return nil, err
		}
		if !p.PerLayer() {
			return []hooks.Site{{Point: p, Layer: -1}}, nil
		}
		var out []hooks.Site
		for l := 0; l < m.NLayers(); l++ {
			out = append(out, hooks.Site{Point: p, Layer: l})
		}
		return out, nil
	}
	site, err := m.ParseSite(s)
	if err != nil {
		return nil, err
	}
	return []hooks.Site{site}, nil
}

type gradSummary struct {
	Point  string  `json:"point"`
	Layer  *int    `json:"layer"`
	Shape  []int   `json:"shape"`
	MaxAbs float64 `json:"max_abs"`
	File   string  `json:"file,omitempty"`
}

// backwardRun is what grad and attribute share: the model, the input rows,
// the loss, and the backward options of the flags.
type backwardRun struct {
	m       *modelctx.Transformer
	rows    [][]int
	loss    modelctx.Loss
	tgt     target
	opts    []modelctx.BackwardOption
	release func()
}

func openBackward(c *cli.Context) (_ *backwardRun, err error) {
	b := &backwardRun{release: func() {}}
	if b.m, err = openModel(c); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.rows, _, err = inputRows(c, b.m); err != nil {
		return nil, err
	}
	if b.loss, b.tgt, err = parseLoss(c, b.m); err != nil {
		return nil, err
	}
	if b.opts, b.release, err = backwardOptions(c, b.m); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *backwardRun) close() {
	b.release()
	b.m.Close()
}

func runGrad(c *cli.Context) error {
	b, err := openBackward(c)
	if err != nil {
		return err
	}
	defer b.close()
	m, opts := b.m, b.opts
	if f, err := gradFilter(c); err != nil {
		return err
	} else if f != nil {
		opts = append(opts, modelctx.GradsAt(f))
	}
	g, err := m.Backward(c.Context, b.rows, b.loss, opts...)
	if err != nil {
		return err
	}
	dir := c.String("save-grads")
	var files []npyFile
	var sums []gradSummary
	for _, s := range sitesInOrder(g.Grads, m.NLayers()) {
		t := g.Grads[s]
		sum := gradSummary{Point: s.Point.Path(), Shape: t.Shape, MaxAbs: maxAbs(t.Data)}
		if s.Layer >= 0 {
			l := s.Layer
			sum.Layer = &l
		}
		if dir != "" {
			sum.File = s.Point.FileName(s.Layer) + ".npy"
			files = append(files, npyFile{sum.File, t})
		}
		sums = append(sums, sum)
	}
	if dir != "" {
		if err := writeNpyFolder(c.Context, dir, files); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"loss": g.Loss, "grads": sums})
	}
	fmt.Fprintf(c.App.Writer, "loss %s = %.6g\n", b.loss, g.Loss)
	for _, s := range sums {
		name := s.Point
		if s.Layer != nil {
			name = fmt.Sprintf("%s@%d", s.Point, *s.Layer)
		}
		fmt.Fprintf(c.App.Writer, "%-48s %v  max |grad| %.4g\n", name, s.Shape, s.MaxAbs)
	}
	if dir != "" {
		fmt.Fprintf(c.App.Writer, "wrote %d gradients to %s\n", len(sums), dir)
	}
	return nil
}

// gradFilter reads --points and --layers (nil: every point).
func gradFilter(c *cli.Context) (*modelctx.Filter, error) {
	pts, layers := c.String("points"), c.String("layers")
	if pts == "" && layers == "" {
		return nil, nil
	}
	f := &modelctx.Filter{}
	if pts != "" && pts != "all" {
		for _, s := range strings.Split(pts, ",") {
			p, err := hooks.Parse(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("--points: %w", err)
			}
			f.Points = append(f.Points, p)
		}
	}
	ls, err := parseLayers(layers)
	if err != nil {
		return nil, err
	}
	f.Layers = ls
	return f, nil
}

func parseLayers(s string) ([]int, error) {
	if s == "" || s == "all" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		l, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("--layers: %q is not a layer", part)
		}
		out = append(out, l)
	}
	return out, nil
}

func sitesInOrder(m map[hooks.Site]*hooks.Tensor, nLayers int) []hooks.Site {
	uses := map[hooks.Site]hooks.Use{}
	for s := range m {
		uses[s] = hooks.Read
	}
	return hooks.SitesInOrder(uses, nLayers)
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

// attribution is one ranked entry.
type layerAttribution struct {
	Point string                 `json:"point"`
	Layer *int                   `json:"layer"`
	Top   []modelctx.Attribution `json:"top"`
}

func runAttribute(c *cli.Context) error {
	b, err := openBackward(c)
	if err != nil {
		return err
	}
	defer b.close()
	m, rows, loss, tgt := b.m, b.rows, b.loss, b.tgt
	p, err := hooks.Parse(c.String("points"))
	if err != nil {
		return fmt.Errorf("--point: %w", err)
	}
	if len(p.Shape()) < 3 {
		return fmt.Errorf("--point %s has no axes after batch and token", p)
	}
	k := c.Int("k")
	if k <= 0 {
		return fmt.Errorf("-k %d: want a positive count", k)
	}
	layers, err := parseLayers(c.String("layers"))
	if err != nil {
		return err
	}
	f := &modelctx.Filter{Points: []hooks.Point{p}, Layers: layers}
	opts := append(b.opts, modelctx.GradsAt(f), modelctx.Capture(f))
	g, err := m.Backward(c.Context, rows, loss, opts...)
	if err != nil {
		return err
	}
	row := tgt.row
	if row < 0 {
		row = 0
	}
	if row >= len(rows) {
		return fmt.Errorf("--target row %d out of range [0,%d)", row, len(rows))
	}
	tok, _ := modelTokenizer(m)
	side, _ := modelctx.ParsePadSide(c.String("pad"))
	batch := modelctx.PadRows(rows, side)
	var res []layerAttribution
	for _, s := range sitesInOrder(g.Grads, m.NLayers()) {
		top, err := modelctx.RankAttributions(g.Activations[s], g.Grads[s], batch, row, k, c.Bool("abs"), tok)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		la := layerAttribution{Point: s.Point.Path(), Top: top}
		if s.Layer >= 0 {
			l := s.Layer
			la.Layer = &l
		}
		res = append(res, la)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"loss": g.Loss, "row": row, "layers": res})
	}
	printAttributions(c.App.Writer, loss, g.Loss, row, p, res)
	return nil
}

func printAttributions(w io.Writer, loss modelctx.Loss, val float64, row int, p hooks.Point, res []layerAttribution) {
	fmt.Fprintf(w, "loss %s = %.6g; activation × gradient at %s, row %d\n", loss, val, p, row)
	axes := p.Shape()[2:]
	for _, la := range res {
		if la.Layer != nil {
			fmt.Fprintf(w, "layer %d\n", *la.Layer)
		}
		for i, a := range la.Top {
			parts := make([]string, len(a.Index))
			for j, x := range a.Index {
				parts[j] = fmt.Sprintf("%s %d", axes[j], x)
			}
			fmt.Fprintf(w, "  %2d. pos %-4d %-16s %-20s act %9.4f  grad %9.4g  act×grad %9.4g\n",
				i+1, a.Position, strconv.Quote(a.Token), strings.Join(parts, ", "), a.Activation, a.Gradient, a.Attribution)
		}
	}
}
