package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/sae"
	"github.com/urfave/cli/v2"
)

func saeInfoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "describe an autoencoder: family, sizes, site (TransformerLens and TDB names), normalisation, dead latents",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "sae", Required: true, Usage: "the autoencoder: " + saeRefHelp},
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "a model to resolve the autoencoder's TransformerLens site names against (TDB names are printed then)"},
			&cli.IntFlag{Name: "layer", Value: -1, Usage: "the layer, for a registered family name"},
			saeKindFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"},
		},
		Action: runSAEInfo,
	}
}

type saeInfo struct {
	Source      string        `json:"source"`
	Family      string        `json:"family"`
	Activation  string        `json:"activation"`
	NInputs     int           `json:"d_in"`
	NLatents    int           `json:"d_sae"`
	NOutputs    int           `json:"d_out"`
	Norm        string        `json:"normalize_activations"`
	Site        *sae.SiteSpec `json:"site,omitempty"`
	TDBSite     string        `json:"tdb_site,omitempty"`
	TDBSiteOut  string        `json:"tdb_site_out,omitempty"`
	SAELayer    *int          `json:"sae_layer,omitempty"`
	DeadLatents *int          `json:"dead_latents,omitempty"`
}

func runSAEInfo(c *cli.Context) error {
	ae, _, err := openSAERef(c, c.String("sae"), c.Int("layer"))
	if err != nil {
		return err
	}
	defer ae.Close()
	info := saeInfo{
		Source: ae.Source, Family: ae.Family(), Activation: ae.Activation.String(),
		NInputs: ae.NInputs, NLatents: ae.NLatents, NOutputs: ae.NOutputs(), Norm: ae.Norm(), Site: ae.Site(),
	}
	if info.Family == sae.FamilyTDB {
		info.Family = "tdb"
	}
	if n, err := ae.DeadLatents(); err == nil {
		info.DeadLatents = &n
	} else if !errors.Is(err, sae.ErrNoFrequencies) {
		return err
	}
	if c.String("model") != "" && info.Site != nil && info.Site.HookName != "" {
		m, err := openModel(c)
		if err != nil {
			return err
		}
		defer m.Close()
		b, err := sae.Bind(ae, saeResolver(m), m.NLayers())
		if err != nil {
			return err
		}
		info.TDBSite, info.SAELayer = b.In.String(), &b.Layer
		if b.Out != b.In {
			info.TDBSiteOut = b.Out.String()
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "source:       %s\n", info.Source)
	fmt.Fprintf(w, "family:       %s (%s)\n", info.Family, info.Activation)
	fmt.Fprintf(w, "sizes:        d_in %d, d_sae %d, d_out %d\n", info.NInputs, info.NLatents, info.NOutputs)
	fmt.Fprintf(w, "normalise:    %s\n", info.Norm)
	if s := info.Site; s != nil {
		site := s.HookName
		if s.HookNameOut != "" {
			site += " -> " + s.HookNameOut
		}
		fmt.Fprintf(w, "site (TL):    %s (fold_ln=%v center_writing_weights=%v fold_value_biases=%v)\n",
			site, s.Processing.FoldLN, s.Processing.CenterWritingWeights, s.Processing.FoldValueBiases)
	} else {
		fmt.Fprintf(w, "site:         not recorded (give POINT@LAYER)\n")
	}
	if info.TDBSite != "" {
		site := info.TDBSite
		if info.TDBSiteOut != "" {
			site += " -> " + info.TDBSiteOut
		}
		fmt.Fprintf(w, "site (TDB):   %s (sae.* points at layer %d)\n", site, *info.SAELayer)
	}
	if info.DeadLatents != nil {
		fmt.Fprintf(w, "dead latents: %d of %d\n", *info.DeadLatents, info.NLatents)
	}
	return nil
}
