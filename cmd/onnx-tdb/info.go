package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "describe a model: dimensions, stages, weights, hook points",
		Flags: []cli.Flag{modelFlag(), &cli.BoolFlag{Name: "points", Usage: "list every hook site and its tensor"}},
		Action: func(c *cli.Context) error {
			m, err := openModel(c)
			if err != nil {
				return err
			}
			defer m.Close()
			man := m.Manifest()
			w := c.App.Writer
			fmt.Fprintf(w, "model        %s (%s)\n", man.Name, man.Architecture)
			fmt.Fprintf(w, "folder       %s\n", m.Dir())
			fmt.Fprintf(w, "source       %s\n", man.Source)
			cfg := man.Config
			fmt.Fprintf(w, "dimensions   layers %d, d_model %d, heads %d x %d, d_ff %d, vocab %d, context %d\n",
				cfg.NLayers, cfg.DModel, cfg.NHeads, cfg.DHead, cfg.DFF, cfg.NVocab, cfg.NCtx)
			tokName := man.Tokenizer
			if tokName == "" {
				tokName = "none (token ids only)"
			}
			fmt.Fprintf(w, "tokenizer    %s\n", tokName)
			fmt.Fprintf(w, "stages       %d graphs, weights %.1f MB in %s\n", len(man.Stages), float64(man.Weights.Bytes)/1e6, man.Weights.File)
			fmt.Fprintf(w, "hook sites   %d\n", len(man.Points))
			fmt.Fprintf(w, "kv cache     %v\n", len(man.KVCache) > 0)
			if c.Bool("points") {
				for _, s := range m.Sites() {
					fmt.Fprintf(w, "  %-40s %s\n", s.String(), dimShape(s.Point, cfg))
				}
				printAliases(w, man)
			}
			return nil
		},
	}
}
