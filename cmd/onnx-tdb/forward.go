package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
	"github.com/urfave/cli/v2"
)

func modelFlag() cli.Flag {
	return &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "exported folder, checkpoint folder (TDB, Hugging Face GPT-2 or Llama), gpt2-small|medium|large|xl, or an https/az:// checkpoint URL"}
}

func inputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tokens", Usage: "token ids: rows separated by ';', ids by ',' (\"15496,11,616;818,7795\")"},
		&cli.StringSliceFlag{Name: "prompt", Usage: "a prompt to tokenize (repeatable: one row each)"},
		&cli.StringFlag{Name: "pad", Value: "right", Usage: "pad side for rows of different lengths: right or left"},
	}
}

func forwardCommand() *cli.Command {
	return &cli.Command{
		Name:  "forward",
		Usage: "run a forward pass: top next tokens per row, hook points read and saved",
		Flags: append(append(append([]cli.Flag{modelFlag()}, inputFlags()...),
			&cli.StringFlag{Name: "points", Usage: "hook points to read, comma-separated dot paths (default with --save-activations: all)"},
			&cli.StringFlag{Name: "layers", Usage: "layers to read, comma-separated (default all)"},
			&cli.StringFlag{Name: "save-activations", Usage: "write <dot path>.L<layer>.npy / <dot path>.npy / logits.npy here"},
			countFlag("top", []string{"k"}, 5, 0, maxListed, "next tokens to print per row"),
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"},
		), append(append(interventionFlags(), saeFlags()...), pictureFlags()...)...),
		Action: runForward,
	}
}

// parseFilter reads --points and --layers; nil when neither asks for anything.
func parseFilter(c *cli.Context, m *modelctx.Transformer) (*modelctx.Filter, error) {
	pts, layers := c.String("points"), c.String("layers")
	if pts == "" && layers == "" && c.String("save-activations") == "" {
		return nil, nil
	}
	f := &modelctx.Filter{}
	if pts != "" && pts != "all" {
		for _, s := range strings.Split(pts, ",") {
			if isForeignName(m, strings.TrimSpace(s)) {
				continue // read by readNamed
			}
			p, err := hooks.Parse(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("--points: %w", err)
			}
			f.Points = append(f.Points, p)
		}
		if err := addNamedSites(c, m, f); err != nil {
			return nil, err
		}
	}
	if layers != "" && layers != "all" {
		for _, s := range strings.Split(layers, ",") {
			l, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("--layers: %q is not a layer", s)
			}
			f.Layers = append(f.Layers, l)
		}
	}
	return f, nil
}

type rowResult struct {
	Prompt   string              `json:"prompt,omitempty"`
	Tokens   []int               `json:"tokens"`
	Position int                 `json:"position"`
	Top      []modelctx.TopToken `json:"top"`
}

func runForward(c *cli.Context) error {
	m, err := openModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	rows, prompts, err := inputRows(c, m)
	if err != nil {
		return err
	}
	side, err := modelctx.ParsePadSide(c.String("pad"))
	if err != nil {
		return err
	}
	filter, err := parseFilter(c, m)
	if err != nil {
		return err
	}
	opts := []modelctx.ForwardOption{modelctx.WithPad(side)}
	ho, release, err := commandHooks(c, m)
	if err != nil {
		return err
	}
	defer release()
	opts = append(opts, ho...)
	pics, err := newPictures(c, m)
	if err != nil {
		return err
	}
	opts = append(opts, pics.options()...)
	var out *modelctx.Output
	if filter != nil {
		// The points are read (and --save-activations writes them) straight
		// from ONNX Runtime's memory, without a copy into Go.
		v, err := m.ForwardViews(c.Context, rows, filter, opts...)
		if err != nil {
			return err
		}
		defer v.Release()
		out = v.Output
	} else if out, err = m.Forward(c.Context, rows, opts...); err != nil {
		return err
	}
	if dir := c.String("save-activations"); dir != "" {
		if err := saveActivations(c.Context, dir, out); err != nil {
			return err
		}
		if err := saveNamed(c, m, dir, out); err != nil {
			return err
		}
	}
	tok, _ := modelTokenizer(m)
	if err := pics.write(rows, side, tok); err != nil {
		return err
	}
	results, err := topTokens(out, rows, prompts, c.Int("top"), tok)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"rows": results})
	}
	if prompts == nil && tok != nil {
		// --tokens rows are shown decoded, as --prompt rows are.
		for i := range results {
			if s, err := tok.Decode(rows[i]); err == nil {
				results[i].Prompt = s
			}
		}
	}
	printTop(c.App.Writer, results)
	if filter != nil && c.String("save-activations") == "" {
		printActivations(c.App.Writer, out)
	}
	return nil
}

// topTokens ranks the logits at each row's last real position.
func topTokens(out *modelctx.Output, rows [][]int, prompts []string, k int, tok tokenizer.Tokenizer) ([]rowResult, error) {
	top, err := out.TopNextTokens(k, tok)
	if err != nil {
		return nil, err
	}
	res := make([]rowResult, len(rows))
	for b, r := range rows {
		res[b] = rowResult{Tokens: r, Position: top[b].Position, Top: top[b].Top}
		if prompts != nil {
			res[b].Prompt = prompts[b]
		}
	}
	return res, nil
}

func printTop(w io.Writer, results []rowResult) {
	for b, r := range results {
		head := fmt.Sprintf("row %d (%s)", b, plural(len(r.Tokens), "token"))
		if r.Prompt != "" {
			head += fmt.Sprintf(": %q", r.Prompt)
		}
		fmt.Fprintln(w, head)
		for i, t := range r.Top {
			tok := strconv.Quote(t.Token)
			if t.Token == "" {
				tok = "" // a model without a tokenizer: ids only
			}
			fmt.Fprintf(w, "  %d. %6d  %-20s logit %.4f\n", i+1, t.ID, tok, t.Logit)
		}
	}
}

func printActivations(w io.Writer, out *modelctx.Output) {
	uses := map[hooks.Site]hooks.Use{}
	for s := range out.Activations {
		uses[s] = hooks.Read
	}
	nLayers := 0
	for s := range out.Activations {
		if s.Layer+1 > nLayers {
			nLayers = s.Layer + 1
		}
	}
	for _, s := range hooks.SitesInOrder(uses, nLayers) {
		t := out.Activations[s]
		fmt.Fprintf(w, "%-48s %v  %s\n", s.String(), t.Shape, summary(t.Data))
	}
}

func summary(v []float32) string {
	if len(v) == 0 {
		return "(empty)"
	}
	n := 4
	if len(v) < n {
		n = len(v)
	}
	parts := make([]string, n)
	for i := range parts {
		parts[i] = strconv.FormatFloat(float64(v[i]), 'g', 5, 32)
	}
	s := "[" + strings.Join(parts, " ")
	if len(v) > n {
		s += " ..."
	}
	return s + "]"
}

// saveActivations writes every captured point and the logits as .npy files,
// all at once (see writeNpyFolder).
func saveActivations(ctx context.Context, dir string, out *modelctx.Output) error {
	files := []npyFile{{"logits.npy", out.Logits}}
	for s, t := range out.Activations {
		files = append(files, npyFile{s.Point.FileName(s.Layer) + ".npy", t})
	}
	return writeNpyFolder(ctx, dir, files)
}
