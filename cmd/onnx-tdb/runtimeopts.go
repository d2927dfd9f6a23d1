package main

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/internal/ortenv"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/runtime"
	"github.com/urfave/cli/v2"
)

// runtimeOptions are the ONNX Runtime options of this invocation: the
// ONNX_TDB_* environment variables (see internal/ortenv), then the global
// flags --device, --threads and --no-spin over them. The CLI is the one
// place that reads them; the runtime takes what it is given.
func runtimeOptions(c *cli.Context) (runtime.Options, error) {
	o, err := ortenv.FromEnviron()
	if err != nil {
		return o, err
	}
	if o.Provider, err = runtime.ParseProvider(c.String("device")); err != nil {
		return o, err
	}
	if n := c.Int("threads"); n != 0 {
		if n < 0 {
			return o, fmt.Errorf("--threads %d: want a positive count", n)
		}
		o.Process.Threads = n
	}
	if c.Bool("no-spin") {
		o.Process.NoSpin = true
	}
	return o, nil
}

// setRuntimeDefaults makes this invocation's process settings (threads,
// spinning, log level, telemetry) the runtime's defaults, before any model
// starts it.
func setRuntimeDefaults(c *cli.Context) error {
	o, err := runtimeOptions(c)
	if err != nil {
		return err
	}
	return runtime.SetProcessDefaults(o.Process)
}

// withRuntime is the modelctx option that opens a model with this
// invocation's runtime options.
func withRuntime(c *cli.Context) (modelctx.Option, error) {
	o, err := runtimeOptions(c)
	if err != nil {
		return nil, err
	}
	return modelctx.WithRuntime(o), nil
}
