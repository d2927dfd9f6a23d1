package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/urfave/cli/v2"
)

// cpuProfileFlag names the file a command writes a Go CPU profile to
// (go tool pprof reads it): where a benchmark spends its time on the Go side.
func cpuProfileFlag() cli.Flag {
	return &cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile of the command to `FILE` (read it with go tool pprof)"}
}

// withCPUProfile runs action with Go's CPU profiler on when --cpuprofile is set.
func withCPUProfile(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		path := c.String("cpuprofile")
		if path == "" {
			return action(c)
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpu profile: %w", err)
		}
		err = action(c)
		pprof.StopCPUProfile()
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("cpu profile: %w", cerr)
		}
		return err
	}
}
