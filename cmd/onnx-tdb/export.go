package main

import (
	"fmt"
	"os"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/urfave/cli/v2"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "export a checkpoint (folder, name or URL) to an exported model directory",
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output folder", Required: true},
			&cli.BoolFlag{Name: "whole", Usage: "also write whole.onnx, the model as one graph (the benchmark baseline)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing exported folder"},
		},
		Action: func(c *cli.Context) error {
			ref := c.String("model")
			if ref == "" {
				return fmt.Errorf("--model is required")
			}
			src, err := checkpointSource(c, ref)
			if err != nil {
				return err
			}
			man, err := export.Write(c.Context, src, c.String("out"), export.WriteOptions{Overwrite: c.Bool("force"), Whole: c.Bool("whole")})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "exported %s (%d layers, d_model %d, %d hook sites) to %s\n",
				man.Source, man.Config.NLayers, man.Config.DModel, len(man.Points), c.String("out"))
			return nil
		},
	}
}

// checkpointSource opens a local checkpoint folder, or fetches a named or
// remote one into the cache first.
func checkpointSource(c *cli.Context, ref string) (export.Source, error) {
	if st, err := os.Stat(ref); err == nil && st.IsDir() {
		return export.OpenSource(ref)
	}
	dir, err := export.FetchCheckpoint(c.Context, ref, fetchOptions(c))
	if err != nil {
		return nil, err
	}
	return export.OpenSource(dir)
}
