package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/harvest"
	"github.com/onnx-tdb/onnx-tdb/harvest/records"
	"github.com/onnx-tdb/onnx-tdb/viz"
	"github.com/urfave/cli/v2"
)

func recordsCommand() *cli.Command {
	return &cli.Command{
		Name:  "records",
		Usage: "read collated activation records (ours, or TDB's public datasets)",
		Subcommands: []*cli.Command{{
			Name:  "show",
			Usage: "print a unit's most activating examples with each token's activation, and its statistics",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "records", Required: true, Usage: "a folder holding collated-activations/ (or a harvest output folder), or an az:// / https:// location of one"},
				&cli.StringFlag{Name: "point", Usage: "the point folder inside a harvest output folder holding several (e.g. mlp.post_act)"},
				&cli.IntFlag{Name: "layer", Required: true, Usage: "layer directory (0 for once points)"},
				&cli.IntFlag{Name: "unit", Required: true, Usage: "neuron or latent index"},
				&cli.BoolFlag{Name: "json", Usage: "print the record as TDB's JSON"},
				&cli.BoolFlag{Name: "random", Usage: "also print the random sample"},
				&cli.StringFlag{Name: "html", Usage: "write a self-contained HTML page of the record here (tokens shaded by activation, as TDB's neuron viewer)"},
			},
			Action: runRecordsShow,
		}},
	}
}

func runRecordsShow(c *cli.Context) error {
	r, err := harvest.LoadRecord(c.Context, c.String("records"), c.Int("layer"), c.Int("unit"),
		harvest.WithPoint(c.String("point")), harvest.WithFetch(fetchOptions(c)))
	if err != nil {
		return err
	}
	w := c.App.Writer
	if path := c.String("html"); path != "" {
		if err := writeRecordHTML(path, r); err != nil {
			return err
		}
		fmt.Fprintf(w, "wrote %s\n", path)
		return nil
	}
	if c.Bool("json") {
		_, err := fmt.Fprintf(w, "%s\n", records.Marshal(r))
		return err
	}
	colour := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			colour = true
		}
	}
	printRecord(w, r, colour, c.Bool("random"))
	return nil
}

// printRecord writes the statistics and the examples, each token followed
// by its activation (plain), or shaded by it (colour).
func printRecord(w io.Writer, r *records.NeuronRecord, colour, random bool) {
	fmt.Fprintf(w, "layer %d, unit %d: mean %.4g  variance %.4g  skewness %.4g  kurtosis %.4g\n",
		r.ID.Layer, r.ID.Index, r.Mean, r.Variance, r.Skewness, r.Kurtosis)
	scale := 0.0
	for _, a := range r.MostPositive {
		scale = math.Max(scale, float64(a.Max()))
	}
	if len(r.QuantileBoundaries) > 0 {
		fmt.Fprintf(w, "quantile boundaries: %v\n", r.QuantileBoundaries)
	}
	section := func(title string, recs []records.ActivationRecord) {
		fmt.Fprintf(w, "\n%s (%d):\n", title, len(recs))
		for i, a := range recs {
			fmt.Fprintf(w, "%3d  max %.3f  ", i+1, a.Max())
			for j, tok := range a.Tokens {
				fmt.Fprint(w, shade(visible(tok), float64(a.Activations[j]), scale, colour))
			}
			fmt.Fprintln(w)
		}
	}
	section("most positive examples", r.MostPositive)
	if random {
		section("random sample", r.RandomSample)
	}
}

// visible shows whitespace-only control characters.
func visible(s string) string {
	return strings.NewReplacer("\n", "⏎", "\t", "⇥", "\r", "␍").Replace(s)
}

func shade(tok string, v, scale float64, colour bool) string {
	if !colour {
		return fmt.Sprintf("%s⟨%.2f⟩", tok, v)
	}
	r := 0.0
	if scale > 0 {
		r = math.Max(0, math.Min(1, v/scale))
	}
	g := int(255 - 155*r)
	return fmt.Sprintf("\x1b[30;48;2;%d;255;%dm%s\x1b[0m", g, g, tok)
}

// writeRecordHTML renders a record through viz into path, written under a
// temporary name and renamed when complete.
func writeRecordHTML(path string, r *records.NeuronRecord) error {
	vr, err := viz.ParseRecord(records.Marshal(r))
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	title := fmt.Sprintf("layer %d, unit %d", r.ID.Layer, r.ID.Index)
	if err := viz.WriteRecordHTML(tmp, vr, title); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
