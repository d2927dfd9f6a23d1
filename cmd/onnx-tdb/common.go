package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
	"github.com/urfave/cli/v2"
)

func fetchOptions(c *cli.Context) fetch.Options {
	return fetch.Options{Dir: c.String("cache"), Endpoint: c.String("blob-endpoint")}
}

// openModel resolves --model (exporting it into the cache once when it is a
// checkpoint, a name or a URL) and opens it on the chosen device.
func openModel(c *cli.Context) (*modelctx.Transformer, error) {
	ref := c.String("model")
	if ref == "" {
		return nil, fmt.Errorf("--model is required (an exported folder, a TDB checkpoint folder, %s, or an https/az:// URL)", strings.Join(export.ModelNames(), "|"))
	}
	dir, err := export.Resolve(c.Context, ref, export.ResolveOptions{Fetch: fetchOptions(c)})
	if err != nil {
		return nil, err
	}
	rt, err := withRuntime(c)
	if err != nil {
		return nil, err
	}
	return modelctx.Open(dir, rt)
}

// parseTokenRows parses "15496,11,616;818,7795": rows separated by ';',
// ids by ','.
func parseTokenRows(s string) ([][]int, error) {
	var rows [][]int
	for i, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("--tokens: row %d is empty", i)
		}
		var row []int
		for _, f := range strings.Split(part, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return nil, fmt.Errorf("--tokens: row %d: %q is not a token id", i, f)
			}
			row = append(row, v)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// inputRows reads --tokens or --prompt (repeatable) into token rows.
func inputRows(c *cli.Context, m *modelctx.Transformer) ([][]int, []string, error) {
	toks, prompts := c.String("tokens"), c.StringSlice("prompt")
	switch {
	case toks != "" && len(prompts) > 0:
		return nil, nil, fmt.Errorf("give --tokens or --prompt, not both")
	case toks != "":
		rows, err := parseTokenRows(toks)
		return rows, nil, err
	case len(prompts) > 0:
		tok, err := modelTokenizer(m)
		if err != nil {
			return nil, nil, err
		}
		var rows [][]int
		for _, p := range prompts {
			rows = append(rows, tok.Encode(p))
		}
		return rows, prompts, nil
	}
	return nil, nil, fmt.Errorf("give --tokens or --prompt")
}

func modelTokenizer(m *modelctx.Transformer) (tokenizer.Tokenizer, error) {
	if m == nil {
		return nil, modelctx.ErrNoTokenizer
	}
	return m.Tokenizer()
}
