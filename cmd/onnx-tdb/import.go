package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/urfave/cli/v2"
)

func importCommand() *cli.Command {
	return &cli.Command{
		Name:  "import",
		Usage: "bring your own ONNX transformer: one .onnx graph plus a hook map (hook point -> tensor name) become an exported model folder",
		Description: "The graph is checked by one forward pass: every mapped tensor must have its hook point's layout.\n" +
			"forward, sample and the hook flags then work on --out like on an exported GPT-2.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "onnx", Required: true, Usage: "the model graph (.onnx; weights inside or as external data beside it)"},
			&cli.StringFlag{Name: "hookmap", Required: true, Usage: "hook map JSON: points[] with hook|point, layer (null for once points), tensor, layout.perm_onnx_to_reference"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "exported folder to write"},
			&cli.StringFlag{Name: "name", Usage: "model name (default: the folder name)"},
			&cli.StringFlag{Name: "tokenizer", Usage: "gpt2 when the model uses GPT-2's tokenizer; none (the default) for token ids only"},
			&cli.StringFlag{Name: "tokens", Usage: "name of the int64 token input (default: from the hook map or the graph)"},
			&cli.StringFlag{Name: "logits", Usage: "name of the logits output (default: from the hook map or the graph)"},
			&cli.StringSliceFlag{Name: "map", Usage: "NAME=POINT: map a point name of the hook map to a TDB dot path (or block_input, or - for none); repeatable"},
			&cli.StringSliceFlag{Name: "dim", Usage: "KEY=N: set a dimension the graph does not show (n_layers, d_model, n_heads, d_head, d_ff, n_vocab, n_ctx); repeatable"},
			&cli.BoolFlag{Name: "overwrite", Usage: "replace an existing exported folder"},
		},
		Action: runImport,
	}
}

func runImport(c *cli.Context) error {
	o := export.ImportOptions{
		Name:      c.String("name"),
		Overwrite: c.Bool("overwrite"),
		Tokens:    c.String("tokens"),
		Logits:    c.String("logits"),
		Map:       map[string]string{},
	}
	switch tok := c.String("tokenizer"); tok {
	case "", "none":
	default:
		o.Tokenizer = tok
	}
	for _, s := range c.StringSlice("map") {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("--map %s: want NAME=POINT", s)
		}
		o.Map[k] = v
	}
	for _, s := range c.StringSlice("dim") {
		if err := setDim(&o.Config, s); err != nil {
			return err
		}
	}
	rt, err := withRuntime(c)
	if err != nil {
		return err
	}
	man, err := modelctx.Import(c.String("onnx"), c.String("hookmap"), c.String("out"), o, rt)
	if err != nil {
		return err
	}
	w := c.App.Writer
	cfg := man.Config
	fmt.Fprintf(w, "imported     %s -> %s\n", c.String("onnx"), c.String("out"))
	fmt.Fprintf(w, "io           tokens %q, logits %q\n", man.Inputs.Tokens, man.Inputs.Logits)
	fmt.Fprintf(w, "dimensions   layers %d, d_model %d, heads %d x %d, d_ff %d, vocab %d, context %s\n",
		cfg.NLayers, cfg.DModel, cfg.NHeads, cfg.DHead, cfg.DFF, cfg.NVocab, orUnknown(cfg.NCtx))
	fmt.Fprintf(w, "weights      %d tensors, %.1f MB in %s\n", len(man.Weights.Tensors), float64(man.Weights.Bytes)/1e6, man.Weights.File)
	fmt.Fprintf(w, "hook sites   %d\n", len(man.Points))
	printAliases(w, man)
	tok := man.Tokenizer
	if tok == "" {
		tok = "none (token ids only)"
	}
	fmt.Fprintf(w, "tokenizer    %s\n", tok)
	return nil
}

func orUnknown(v int) string {
	if v <= 0 {
		return "unknown"
	}
	return strconv.Itoa(v)
}

func setDim(cfg *export.Dims, s string) error {
	k, v, ok := strings.Cut(s, "=")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n <= 0 {
		return fmt.Errorf("--dim %s: want KEY=N with N > 0", s)
	}
	dst := map[string]*int{
		"n_layers": &cfg.NLayers, "d_model": &cfg.DModel, "n_heads": &cfg.NHeads, "d_head": &cfg.DHead,
		"d_ff": &cfg.DFF, "n_vocab": &cfg.NVocab, "n_ctx": &cfg.NCtx,
	}[k]
	if dst == nil {
		return fmt.Errorf("--dim %s: unknown key %q (n_layers, d_model, n_heads, d_head, d_ff, n_vocab, n_ctx)", s, k)
	}
	*dst = n
	return nil
}

// printAliases lists an imported model's own point names with the TDB
// sites they stand for (the names the hook flags take).
func printAliases(w io.Writer, man *export.Manifest) {
	if len(man.Aliases) > 0 {
		fmt.Fprintln(w, "own names    (hook flags and --points take the TDB names on the right)")
	}
	for _, a := range man.Aliases {
		name := a.Name
		if a.Layer != nil {
			name = fmt.Sprintf("%s@%d", a.Name, *a.Layer)
		}
		target := "(no TDB point: not hookable)"
		if a.Point != "" {
			target = a.Point
			if a.PointLayer != nil {
				target = fmt.Sprintf("%s@%d", a.Point, *a.PointLayer)
			}
		}
		fmt.Fprintf(w, "  %-20s -> %s\n", name, target)
	}
}
