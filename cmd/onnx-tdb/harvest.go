package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/harvest"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/runtime"
	"github.com/urfave/cli/v2"
)

func harvestCommand() *cli.Command {
	return &cli.Command{
		Name:  "harvest",
		Usage: "run the model over a corpus and write TDB's collated activation records (top examples, random samples, quantiles, moments) per unit",
		Description: "Shards of examples go through a NATS JetStream work queue: by default an embedded server (storing in OUT/.harvest/, loopback only)\n" +
			"and one in-process worker; with --nats, an existing server and workers started with 'onnx-tdb harvest worker --nats URL'.\n" +
			"An interrupted harvest resumes when run again with the same arguments.",
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringSliceFlag{Name: "corpus", Usage: "corpus file, repeatable, in stream order: .txt (one document), .jsonl (one document per line, its \"text\"), .npy (1-D token ids; or 2-D [N, context] ready examples, alone)"},
			&cli.StringSliceFlag{Name: "at", Usage: "POINT or POINT@LAYERS (@3, @0-3, @1,5), repeatable: harvest every unit of the point (its axes after batch and token, flattened)"},
			&cli.StringSliceFlag{Name: "sae", Usage: "POINT@LAYER=AUTOENCODER, repeatable: harvest the autoencoder's latents (unspliced), written under sae.latents"},
			&cli.IntFlag{Name: "context", Value: 64, Usage: "tokens per example window"},
			&cli.IntFlag{Name: "top", Value: 20, Usage: "most positive examples per unit"},
			&cli.IntFlag{Name: "random", Value: 20, Usage: "random examples per unit"},
			&cli.IntFlag{Name: "quantiles", Value: 0, Usage: "quantile buckets of the per-example maxima (0: none); needs a second pass"},
			&cli.IntFlag{Name: "per-quantile", Value: 5, Usage: "random examples per quantile bucket"},
			&cli.Int64Flag{Name: "quantile-memory", Value: harvest.DefaultQuantileBudget >> 20, Usage: "MiB the quantile boundaries may hold: every example's maximum per unit while that fits (exact), else a sketch (rank error at most 0.5% of the examples) while that fits"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "sampling seed"},
			&cli.IntFlag{Name: "batch", Value: 32, Usage: "examples per forward pass"},
			&cli.IntFlag{Name: "shard", Usage: "examples per shard, a multiple of --batch (default 16 batches)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output folder (required)"},
			&cli.StringFlag{Name: "nats", Usage: "submit to this NATS server (nats://HOST:4222, JetStream on) instead of an embedded one"},
			&cli.IntFlag{Name: "workers", Value: -1, Usage: "in-process workers (default: 1 with the embedded server, 0 with --nats)"},
			&cli.DurationFlag{Name: "ack-wait", Value: 30 * time.Second, Usage: "how long a shard stays with a silent worker before it is redelivered (workers send in-progress acks every quarter of it)"},
		},
		Action: runHarvest,
		Subcommands: []*cli.Command{{
			Name:  "worker",
			Usage: "compute shards of harvest jobs queued on a NATS server, until interrupted",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "nats", Required: true, Usage: "NATS server URL (nats://HOST:4222)"},
				&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "use this copy of the model instead of the location each job names (it must be the same model)"},
				&cli.DurationFlag{Name: "ack-wait", Value: 30 * time.Second, Usage: "the queue's ack wait (as the coordinator's)"},
			},
			Action: runHarvestWorker,
		}},
	}
}

// modelOpener resolves a model reference as --model does and opens it on
// the global --device.
func modelOpener(c *cli.Context) harvest.Opener {
	return func(ctx context.Context, ref string) (*modelctx.Transformer, error) {
		if ref == "" {
			return nil, fmt.Errorf("--model is required (an exported folder, a TDB checkpoint folder, %s, or an https/az:// URL)", strings.Join(export.ModelNames(), "|"))
		}
		dir, err := export.Resolve(ctx, ref, export.ResolveOptions{Fetch: fetchOptions(c)})
		if err != nil {
			return nil, err
		}
		dev, id, err := runtime.ParseDevice(c.String("device"))
		if err != nil {
			return nil, err
		}
		return modelctx.Open(dir, modelctx.WithDevice(dev, id))
	}
}

// absIfLocal makes a local path absolute, so that workers started elsewhere
// on this machine find it; names and URLs are kept.
func absIfLocal(ref string) string {
	if _, err := os.Stat(ref); err != nil {
		return ref
	}
	if abs, err := filepath.Abs(ref); err == nil {
		return abs
	}
	return ref
}

func runHarvest(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("harvest: unexpected argument %q", c.Args().First())
	}
	saeOpts, err := saeOptions(c)
	if err != nil {
		return err
	}
	saes := c.StringSlice("sae")
	for i, v := range saes {
		if site, ref, ok := strings.Cut(v, "="); ok {
			saes[i] = site + "=" + absIfLocal(ref)
		}
	}
	return harvest.Run(c.Context, harvest.Options{
		Model:  absIfLocal(c.String("model")),
		Corpus: c.StringSlice("corpus"), At: c.StringSlice("at"), SAE: saes,
		Context: c.Int("context"), Top: c.Int("top"), Random: c.Int("random"),
		Quantiles: c.Int("quantiles"), PerQuantile: c.Int("per-quantile"), Batch: c.Int("batch"),
		Seed: c.Uint64("seed"), ShardSize: c.Int("shard"), QuantileBudget: c.Int64("quantile-memory") << 20,
		Out: c.String("out"), NATS: c.String("nats"), Workers: c.Int("workers"), AckWait: c.Duration("ack-wait"),
		Open: modelOpener(c), SAEOpts: saeOpts, Threads: c.Int("threads"),
		Log: c.App.ErrWriter, Progress: harvest.TerminalProgress(),
	})
}

func runHarvestWorker(c *cli.Context) error {
	saeOpts, err := saeOptions(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "harvest worker: pulling shards from %s (Ctrl-C to stop)\n", c.String("nats"))
	return harvest.Work(c.Context, harvest.WorkerOptions{
		NATS: c.String("nats"), Model: c.String("model"), Open: modelOpener(c), SAE: saeOpts,
		AckWait: c.Duration("ack-wait"), Log: c.App.ErrWriter, Threads: c.Int("threads"),
	})
}
