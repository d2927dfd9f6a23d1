package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// countFlag is an integer flag that must lie in [lo, hi] when given; an
// error names the flag and the range instead of a panic deep inside.
func countFlag(name string, aliases []string, value, lo, hi int, usage string) *cli.IntFlag {
	return &cli.IntFlag{Name: name, Aliases: aliases, Value: value, Usage: usage,
		Action: func(_ *cli.Context, v int) error { return checkRange(name, v, lo, hi) }}
}

func checkRange(name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("--%s %d: want a whole number in %d..%d", name, v, lo, hi)
	}
	return nil
}

// Counts no run can exceed, so that a typo fails at once instead of asking
// for a huge allocation.
const (
	maxListed = 1 << 20 // entries printed per row, layer or token
	maxRuns   = 1 << 20
	maxLayers = 1024
)

// globalFlags are the flags that apply to every command. They are accepted
// before the command (onnx-tdb --device cuda forward ...) and after it
// (onnx-tdb forward --device cuda ...).
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "device", Value: "cpu", Usage: "execution provider: cpu or cuda[:N]", EnvVars: []string{"ONNX_TDB_DEVICE"}},
		&cli.IntFlag{Name: "threads", Usage: "size of the one thread pool every ONNX Runtime session shares (0: $ONNX_TDB_THREADS, else one per core)"},
		&cli.BoolFlag{Name: "no-spin", Usage: "let the shared pool's idle threads sleep at once instead of spinning briefly (default $ONNX_TDB_SPIN, else spinning)"},
		&cli.StringFlag{Name: "cache", Usage: "cache root for downloads and exports (default $ONNX_TDB_CACHE or ~/.cache/onnx-tdb)"},
		&cli.StringFlag{Name: "blob-endpoint", Usage: "blob service URL with {account}, e.g. http://127.0.0.1:10000/{account} (default $ONNX_TDB_BLOB_ENDPOINT or the public service)"},
	}
}

var globalNames = []string{"device", "threads", "no-spin", "cache", "blob-endpoint"}

// applyGlobals puts the process-wide settings of the global flags into
// effect; it may run at several command levels with the same values.
func applyGlobals(c *cli.Context) error { return setRuntimeDefaults(c) }

// withGlobals gives cmd and its subcommands the global flags. A command
// level that does not set one takes the value of the level above, so the
// flag may stand before or after the command name.
func withGlobals(cmd *cli.Command) *cli.Command {
	cmd.Flags = append(cmd.Flags, globalFlags()...)
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		local := map[string]bool{}
		for _, n := range c.LocalFlagNames() {
			local[n] = true
		}
		if lineage := c.Lineage(); len(lineage) > 1 {
			parent := lineage[1]
			for _, name := range globalNames {
				if local[name] || !parent.IsSet(name) {
					continue
				}
				if err := c.Set(name, fmt.Sprint(parent.Value(name))); err != nil {
					return err
				}
			}
		}
		if err := applyGlobals(c); err != nil {
			return err
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
	for _, sub := range cmd.Subcommands {
		withGlobals(sub)
	}
	return cmd
}
