// Command onnx-tdb reads, ablates and patches the activations of
// transformers run by ONNX Runtime: export checkpoints, run forward passes
// with hooks, sample, encode with sparse autoencoders, and benchmark.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/onnx-tdb/onnx-tdb/runtime"
	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "onnx-tdb:", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "onnx-tdb",
		Usage: "look inside transformers run by ONNX Runtime: hook points, ablations, patches, sparse autoencoders",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "execution provider: cpu or cuda[:N]", EnvVars: []string{"ONNX_TDB_DEVICE"}},
			&cli.IntFlag{Name: "threads", Usage: "size of the one thread pool every ONNX Runtime session shares (0: $ONNX_TDB_THREADS, else one per core)"},
			&cli.BoolFlag{Name: "no-spin", Usage: "let the shared pool's idle threads sleep at once instead of spinning briefly (default $ONNX_TDB_SPIN, else spinning)"},
			&cli.StringFlag{Name: "cache", Usage: "cache root for downloads and exports (default $ONNX_TDB_CACHE or ~/.cache/onnx-tdb)"},
			&cli.StringFlag{Name: "blob-endpoint", Usage: "blob service URL with {account}, e.g. http://127.0.0.1:10000/{account} (default $ONNX_TDB_BLOB_ENDPOINT or the public service)"},
		},
		Before: func(c *cli.Context) error {
			if c.Bool("no-spin") {
				if err := runtime.SetGlobalSpin(false); err != nil {
					return err
				}
			}
			if n := c.Int("threads"); n != 0 {
				if n < 0 {
					return fmt.Errorf("--threads %d: want a positive count", n)
				}
				return runtime.SetGlobalThreads(n)
			}
			return nil
		},
		Commands: []*cli.Command{
			exportCommand(),
			forwardCommand(),
			saeCommand(),
			sampleCommand(),
			gradCommand(),
			attributeCommand(),
			infoCommand(),
			importCommand(),
			randomCheckpointCommand(),
			benchCommand(),
			harvestCommand(),
			recordsCommand(),
		},
		HideHelpCommand: true,
		// Repeatable flags (--prompt, --ablate, ...) take each value whole: a
		// prompt such as "Hello, my name is" must not be split at its commas.
		DisableSliceFlagSeparator: true,
	}
}
