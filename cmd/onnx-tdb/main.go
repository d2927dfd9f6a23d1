package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	_ "github.com/onnx-tdb/onnx-tdb/export/arch/all" // every built-in architecture
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
		Name:   "onnx-tdb",
		Usage:  "look inside transformers run by ONNX Runtime: hook points, ablations, patches, sparse autoencoders",
		Flags:  globalFlags(),
		Before: applyGlobals,
		Commands: []*cli.Command{
			withGlobals(exportCommand()),
			withGlobals(forwardCommand()),
			withGlobals(saeCommand()),
			withGlobals(sampleCommand()),
			withGlobals(gradCommand()),
			withGlobals(attributeCommand()),
			withGlobals(infoCommand()),
			withGlobals(importCommand()),
			withGlobals(randomCheckpointCommand()),
			withGlobals(benchCommand()),
			withGlobals(cacheCommand()),
			withGlobals(serveCommand()),
			withGlobals(patchCommand()),
			withGlobals(lensCommand()),
			withGlobals(dlaCommand()),
			withGlobals(harvestCommand()),
			withGlobals(recordsCommand()),
		},
		HideHelpCommand: true,
		// Repeatable flags (--prompt, --ablate, ...) take each value whole: a
		// prompt such as "Hello, my name is" must not be split at its commas.
		DisableSliceFlagSeparator: true,
	}
}
