package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
	"github.com/urfave/cli/v2"
)

func sampleCommand() *cli.Command {
	return &cli.Command{
		Name:  "sample",
		Usage: "continue prompts with the KV cache: greedy (--temperature 0), nucleus (--top-p) or plain sampling, with hooks on every step",
		Description: `Prompts are left-padded into one batch and continued by -n tokens, with the
original's rules: temperature 0 takes the most likely token; --top-p keeps the
most likely tokens whose cumulative probability stays within the threshold
(the one that crosses it is dropped). --ablate/--set/--add apply at every step.
With one prompt the text streams as it is sampled; with several, each row is
printed on its own line at the end. --json prints {"tokens": [[...]], "strings": [...]}.`,
		Flags: append([]cli.Flag{
			modelFlag(),
			&cli.StringSliceFlag{Name: "prompt", Usage: "a prompt to continue (repeatable: one row each); a literal <|endoftext|> is refused, as in the original"},
			&cli.StringFlag{Name: "tokens", Usage: "prompts as token ids: rows separated by ';', ids by ',' (\"15496,11,616;818,7795\")"},
			&cli.IntFlag{Name: "num-tokens", Aliases: []string{"n"}, Value: 10, Usage: "tokens to sample per prompt"},
			&cli.Float64Flag{Name: "temperature", Value: 1, Usage: "sampling temperature; 0 is greedy (argmax)"},
			&cli.Float64Flag{Name: "top-p", Usage: "nucleus sampling threshold in [0,1]", DefaultText: "off"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed for reproducible sampling", DefaultText: "random"},
			&cli.BoolFlag{Name: "stop-at-eot", Usage: "end each row at its first <|endoftext|>"},
			&cli.BoolFlag{Name: "json", Usage: "print {\"tokens\": [[...]], \"strings\": [...]} at the end instead of text"},
		}, append(interventionFlags(), saeFlags()...)...),
		Action: runSample,
	}
}

func runSample(c *cli.Context) error {
	m, err := openModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	var prompts modelctx.Prompts
	toks, texts := c.String("tokens"), c.StringSlice("prompt")
	switch {
	case toks != "" && len(texts) > 0:
		return fmt.Errorf("give --tokens or --prompt, not both")
	case toks != "":
		rows, err := parseTokenRows(toks)
		if err != nil {
			return err
		}
		prompts = modelctx.TokenPrompts(rows...)
	case len(texts) > 0:
		prompts = modelctx.TextPrompts(texts...)
	default:
		return fmt.Errorf("give --prompt or --tokens")
	}
	opts := []modelctx.SampleOption{
		modelctx.WithNumTokens(c.Int("num-tokens")),
		modelctx.WithTemperature(c.Float64("temperature")),
	}
	if c.IsSet("top-p") {
		opts = append(opts, modelctx.WithTopP(c.Float64("top-p")))
	}
	if c.IsSet("seed") {
		opts = append(opts, modelctx.WithSeed(c.Uint64("seed")))
	}
	if c.Bool("stop-at-eot") {
		opts = append(opts, modelctx.WithStopAtEOT())
	}
	ho, release, err := commandHooks(c, m)
	if err != nil {
		return err
	}
	defer release()
	for _, o := range ho {
		opts = append(opts, o)
	}
	tok, _ := modelTokenizer(m)
	w := c.App.Writer
	batch := len(prompts.Text) + len(prompts.Tokens)
	stream := !c.Bool("json") && batch == 1
	if stream {
		fmt.Fprint(w, promptText(prompts, 0, tok))
		opts = append(opts, modelctx.WithOnToken(func(st modelctx.SampledToken) error {
			_, err := io.WriteString(w, tokenText(st.ID, st.Text, tok))
			return err
		}))
	}
	res, err := m.Sample(c.Context, prompts, opts...)
	if stream {
		fmt.Fprintln(w)
	}
	if err != nil {
		return err
	}
	switch {
	case c.Bool("json"):
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	case !stream:
		for b, row := range res.Tokens {
			var sb strings.Builder
			sb.WriteString(promptText(prompts, b, tok))
			if res.Strings != nil {
				sb.WriteString(res.Strings[b])
			} else {
				for _, id := range row {
					sb.WriteString(tokenText(id, "", nil))
				}
			}
			fmt.Fprintln(w, sb.String())
		}
	}
	return nil
}

// promptText is how row b's prompt is printed before its continuation: the
// text itself, the decoded tokens, or the ids when there is no tokenizer.
func promptText(p modelctx.Prompts, b int, tok tokenizer.Tokenizer) string {
	if p.Text != nil {
		return p.Text[b]
	}
	if tok != nil {
		if s, err := tok.Decode(p.Tokens[b]); err == nil {
			return s
		}
	}
	ids := make([]string, len(p.Tokens[b]))
	for i, id := range p.Tokens[b] {
		ids[i] = fmt.Sprint(id)
	}
	return strings.Join(ids, " ")
}

// tokenText is one sampled token as printed: its text, or " <id>" without a
// tokenizer.
func tokenText(id int, text string, tok tokenizer.Tokenizer) string {
	if tok != nil {
		return text
	}
	return fmt.Sprintf(" %d", id)
}
