package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
	"github.com/urfave/cli/v2"
)

const saeRefHelp = "a .pt state dict, a SAELens folder (cfg.json + sae_weights.safetensors), a converted folder, an az:// or https location, " +
	"saelens:RELEASE/ID (a SAELens release, from the Hugging Face Hub), or a registered family (ae-mlp-post-act-v1|v4, ae-resid-delta-mlp-v1|v4, " +
	"ae-resid-delta-attn-v4, resid_post_mlp|resid_post_attn_v5_32k|128k: the layer comes from the site)"

func saeCommand() *cli.Command {
	common := func() []cli.Flag {
		return []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "sae", Required: true, Usage: "the autoencoder: " + saeRefHelp},
			&cli.StringFlag{Name: "at", Usage: "POINT@LAYER (or a TransformerLens name) the autoencoder reads; a SAELens SAE's own site is the default, and one that disagrees is an error"},
			saeKindFlag(),
		}
	}
	return &cli.Command{
		Name:  "sae",
		Usage: "sparse autoencoders: encode a hook point into latents, list each token's strongest latents, describe one",
		Subcommands: []*cli.Command{
			{
				Name:  "encode",
				Usage: "write latents.npy [B,T,n_latents] and reconstruction.npy [B,T,n_outputs] (float32, in the autoencoder's own coordinates) of the activations it reads",
				Flags: append(append(common(), inputFlags()...),
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "folder to write latents.npy and reconstruction.npy into"},
				),
				Action: runSAEEncode,
			},
			{
				Name:  "top",
				Usage: "print, for each token, its strongest latents",
				Flags: append(append(common(), inputFlags()...),
					countFlag("top", []string{"k"}, 10, 0, maxListed, "latents to print per token"),
					&cli.IntFlag{Name: "n", Hidden: true, Usage: "old spelling of --top", Action: func(c *cli.Context, v int) error {
						if err := checkRange("n", v, 0, maxListed); err != nil {
							return err
						}
						return c.Set("top", fmt.Sprint(v))
					}},
					&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"},
				),
				Action: runSAETop,
			},
			saeInfoCommand(),
		},
	}
}

func saeKindFlag() cli.Flag {
	return &cli.StringFlag{Name: "sae-kind", Usage: "what a .pt state dict is: tdb or openai-v5 (upstream sparse_autoencoder, inputs LN-normalised); default: openai-v5 for upstream's <location>_v5_<size>/autoencoders/<layer>.pt paths, else tdb"}
}

// saeOptions are the load options the global flags give (cache, blob
// endpoint, device, threads).
func saeOptions(c *cli.Context) ([]sae.Option, error) {
	rt, err := runtimeOptions(c)
	if err != nil {
		return nil, err
	}
	return []sae.Option{
		sae.WithFetch(fetchOptions(c)),
		sae.WithRuntime(rt),
		sae.WithKind(c.String("sae-kind")),
	}, nil
}

// parseSAESite reads POINT@LAYER and checks that the model has it.
func parseSAESite(s string, m *modelctx.Transformer) (hooks.Site, error) {
	site, err := m.ParseSite(s)
	if err != nil {
		return hooks.Site{}, err
	}
	if site.Point.IsSAE() || !site.Point.PerLayer() {
		return hooks.Site{}, fmt.Errorf("%s: an autoencoder reads a per-layer point of the model (mlp.post_act@L, resid.torso.delta_mlp@L, resid.torso.delta_attn@L)", s)
	}
	if site.Layer >= m.NLayers() {
		return hooks.Site{}, fmt.Errorf("%s: layer %d out of range [0,%d)", s, site.Layer, m.NLayers())
	}
	if !m.HasSite(site) {
		return hooks.Site{}, fmt.Errorf("%w: %s", modelctx.ErrNoPoint, site)
	}
	return site, nil
}

// openSAERef loads the autoencoder ref: a registered name gives the
// layer's autoencoder (layer < 0: none given), and the input it reads.
func openSAERef(c *cli.Context, ref string, layer int) (*sae.Autoencoder, sae.Input, error) {
	r, err := sae.ResolveRef(ref, layer)
	if err != nil {
		return nil, "", err
	}
	opts, err := saeOptions(c)
	if err != nil {
		return nil, "", err
	}
	if c.String("sae-kind") == "" && r.Kind != "" {
		opts = append(opts, sae.WithKind(r.Kind))
	}
	ae, err := sae.Open(c.Context, r.Location, opts...)
	if err != nil {
		return nil, "", err
	}
	return ae, r.Input, nil
}

// saeInput runs the model over the rows and returns the activations at the
// site, [B,T,n], padded positions included.
func saeInput(c *cli.Context, m *modelctx.Transformer, rows [][]int, site hooks.Site) (*hooks.Tensor, *modelctx.Output, error) {
	side, err := modelctx.ParsePadSide(c.String("pad"))
	if err != nil {
		return nil, nil, err
	}
	out, err := m.Forward(c.Context, rows, modelctx.WithPad(side),
		modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{site.Point}, Layers: []int{site.Layer}}))
	if err != nil {
		return nil, nil, err
	}
	x, ok := out.Activations[site]
	if !ok {
		return nil, nil, fmt.Errorf("%s was not captured", site)
	}
	return x, out, nil
}

// saeRun opens the model and the autoencoder and encodes the input rows.
type saeRun struct {
	m       *modelctx.Transformer
	ae      *sae.Autoencoder
	b       sae.Binding
	rows    [][]int
	prompts []string
	out     *modelctx.Output
	x, z    *hooks.Tensor // x: the autoencoder's input, in its coordinates
}

func (r *saeRun) close() {
	if r.ae != nil {
		r.ae.Close()
	}
	if r.m != nil {
		r.m.Close()
	}
}

func startSAERun(c *cli.Context) (*saeRun, error) {
	r := &saeRun{}
	var err error
	if r.m, err = openModel(c); err != nil {
		return r, err
	}
	if r.rows, r.prompts, err = inputRows(c, r.m); err != nil {
		return r, err
	}
	if r.ae, r.b, err = bindSAE(c, r.m, c.String("sae"), c.String("at")); err != nil {
		return r, err
	}
	x, out, err := saeInput(c, r.m, r.rows, r.b.In)
	if err != nil {
		return r, err
	}
	r.out = out
	if r.x, err = r.b.Input(r.ae, x); err != nil {
		return r, err
	}
	r.z, err = r.ae.Encode(c.Context, r.x)
	return r, err
}

func runSAEEncode(c *cli.Context) error {
	r, err := startSAERun(c)
	defer r.close()
	if err != nil {
		return err
	}
	rec, err := r.ae.DecodeFrom(c.Context, r.z, r.x)
	if err != nil {
		return err
	}
	dir := c.String("out")
	files := []npyFile{{"latents.npy", r.z}, {"reconstruction.npy", rec}}
	if err := writeNpyFolder(c.Context, dir, files); err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintf(c.App.Writer, "wrote %s %v\n", filepath.Join(dir, f.name), f.t.Shape)
	}
	return nil
}

type saeRow struct {
	Prompt string             `json:"prompt,omitempty"`
	Tokens []sae.TokenLatents `json:"tokens"`
}

func runSAETop(c *cli.Context) error {
	r, err := startSAERun(c)
	defer r.close()
	if err != nil {
		return err
	}
	k := c.Int("k")
	if k <= 0 {
		return fmt.Errorf("-k %d: want a positive count", k)
	}
	tok, _ := modelTokenizer(r.m)
	side, _ := modelctx.ParsePadSide(c.String("pad"))
	top := sae.TopLatents(r.z, modelctx.PadRows(r.rows, side), k, tok)
	rows := make([]saeRow, len(top))
	for b := range rows {
		rows[b].Tokens = top[b]
		if r.prompts != nil {
			rows[b].Prompt = r.prompts[b]
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"sae": r.ae.Source, "latents": r.ae.NLatents, "rows": rows})
	}
	fmt.Fprintf(c.App.Writer, "%s at %s: top %d latents per token\n", r.ae, r.b.In, k)
	printSAETop(c.App.Writer, rows)
	return nil
}

func printSAETop(w io.Writer, rows []saeRow) {
	for b, r := range rows {
		head := fmt.Sprintf("row %d", b)
		if r.Prompt != "" {
			head += fmt.Sprintf(": %q", r.Prompt)
		}
		fmt.Fprintln(w, head)
		for _, t := range r.Tokens {
			parts := make([]string, len(t.Latents))
			for i, l := range t.Latents {
				parts[i] = fmt.Sprintf("%d:%.4f", l.Latent, l.Value)
			}
			if len(parts) == 0 {
				parts = []string{"(none active)"}
			}
			fmt.Fprintf(w, "  %4d %6d %-16s %s\n", t.Position, t.ID, strconv.Quote(t.Token), strings.Join(parts, "  "))
		}
	}
}

// saeFlags are the splice flags of forward and sample.
func saeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "sae", Usage: "[POINT@LAYER=]AUTOENCODER: splice an autoencoder in at its input point, with the hook points sae.latents@LAYER, sae.reconstruction@LAYER and sae.error@LAYER (--ablate sae.latents@LAYER:I ...); a SAELens SAE's site (and the layer of its sae.* points) comes from its cfg.json; AUTOENCODER is " + saeRefHelp + "; repeatable"},
		&cli.BoolFlag{Name: "sae-replace", Usage: "the autoencoders replace the activation (the original's add_error=False) instead of adding back the unedited error"},
		saeKindFlag(),
	}
}

// saeHooks builds the splices of --sae (with --sae-replace), for forward and
// sample. It returns nil hooks when there are none; release frees the
// autoencoders after the run. SAE edits (--ablate sae.latents@L:I, ...)
// need a splice at their layer.
func saeHooks(c *cli.Context, m *modelctx.Transformer) (h *hooks.Hooks, release func(), err error) {
	var aes []*sae.Autoencoder
	release = func() {
		for _, ae := range aes {
			ae.Close()
		}
	}
	defer func() {
		if err != nil {
			release()
			h, release = nil, func() {}
		}
	}()
	specs := c.StringSlice("sae")
	spliced := map[int]bool{}
	if len(specs) > 0 {
		h = hooks.New()
	}
	for _, s := range specs {
		at, ref := splitSAESpec(s, m)
		ae, b, err := bindSAE(c, m, ref, at)
		if err != nil {
			return nil, release, fmt.Errorf("--sae %s: %w", s, err)
		}
		aes = append(aes, ae)
		sae.SpliceBound(h, ae, b, !c.Bool("sae-replace"))
		spliced[b.Layer] = true
	}
	edits, err := parseEdits(c, m)
	if err != nil {
		return nil, release, err
	}
	for _, e := range edits {
		if e.Site.Point.IsSAE() && !spliced[e.Site.Layer] {
			return nil, release, fmt.Errorf("%s: no autoencoder is spliced at layer %d (add --sae POINT@%d=AUTOENCODER)", e.Site, e.Site.Layer, e.Site.Layer)
		}
	}
	if c.Bool("sae-replace") && len(specs) == 0 {
		return nil, release, errors.New("--sae-replace without --sae")
	}
	return h, release, nil
}
