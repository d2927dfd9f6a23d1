package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"
	"github.com/urfave/cli/v2"
)

func randomCheckpointCommand() *cli.Command {
	return &cli.Command{
		Name:  "random-checkpoint",
		Usage: "write a random GPT-2-shaped TDB checkpoint (config.json + model_pieces/*.pt), for benchmarks",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output folder"},
			&cli.StringFlag{Name: "size", Value: "small", Usage: "GPT-2 size whose shape to use: small, medium, large, xl"},
			&cli.IntFlag{Name: "layers", Usage: "override the number of layers"},
			&cli.Uint64Flag{Name: "seed", Value: 1},
		},
		Action: func(c *cli.Context) error {
			cfg, ok := gpt2.Shapes[c.String("size")]
			if !ok {
				return fmt.Errorf("--size %q: want small, medium, large or xl", c.String("size"))
			}
			if c.IsSet("layers") {
				if l := c.Int("layers"); l < 1 || l > gpt2.Limits.NLayers {
					return fmt.Errorf("--layers %d: want 1 to %d", l, gpt2.Limits.NLayers)
				}
				cfg.NLayers = c.Int("layers")
			}
			out := c.String("out")
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("%s exists", out)
			}
			if err := gpt2.WriteRandomCheckpoint(c.Context, out, gpt2.Random{Config: cfg, Seed: c.Uint64("seed")}); err != nil {
				return err
			}
			abs, _ := filepath.Abs(out)
			fmt.Fprintf(c.App.Writer, "wrote a random gpt2 checkpoint (%d layers, d_model %d) to %s\n", cfg.NLayers, cfg.DModel, abs)
			return nil
		},
	}
}
