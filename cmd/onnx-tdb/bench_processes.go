package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/urfave/cli/v2"
)

// Ratios measured in one process move between processes by more than the
// rounds' own spread (where each instance's memory happens to lie), so
// bench --processes N runs the whole measurement in N fresh processes one
// after another and reports, for every ratio, the median over them and
// their range. Each child runs with --processes 1 and writes what it
// measured to the file named by the hidden --ratios flag.

const (
	processesFlag = "processes"
	ratiosFlag    = "ratios"
)

// benchResult is what one bench process measured: each row's median ratio
// to the whole graph, and the peak memory after each group of the memory
// pass (× the weights).
type benchResult struct {
	Rows  []benchRow  `json:"rows"`
	Peaks []benchPeak `json:"peaks"`
}

type benchPeak struct {
	Group string  `json:"group"`
	Peak  float64 `json:"peak"`
}

type benchRow struct {
	Group string  `json:"group"`
	Path  string  `json:"path"`
	Ratio float64 `json:"ratio"`
}

// writeBenchResult writes r to path through a temporary name
// (writeFileAtomic), so that a killed child leaves no half file for the
// parent to read.
func writeBenchResult(path string, r benchResult) error {
	if err := writeFileAtomic(path, func(w io.Writer) error { return json.NewEncoder(w).Encode(r) }); err != nil {
		return fmt.Errorf("bench: write results: %w", err)
	}
	return nil
}

// benchSelf makes the command that runs this program with args; tests
// replace it to run their own binary as the program.
var benchSelf = func(ctx context.Context, args []string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find this program: %w", err)
	}
	return exec.CommandContext(ctx, exe, args...), nil
}

// interruptible makes cmd, when ctx ends, get an interrupt first (it stops
// its rounds and cleans up as after Ctrl-C) and a kill only if it has not
// exited 10 s later.
func interruptible(cmd *exec.Cmd) {
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
}

// childArgs are the bench command line a child process runs: every flag
// this one was given (the global ones included), but --processes, --ratios
// and --cpuprofile.
func childArgs(c *cli.Context) []string {
	args := []string{"bench"}
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if name == processesFlag || name == ratiosFlag || name == "cpuprofile" || name == "help" || !c.IsSet(name) {
			continue
		}
		args = append(args, fmt.Sprintf("--%s=%v", name, c.Value(name)))
	}
	return args
}

// runBenchProcesses runs bench in n child processes in turn, passing their
// output through, then prints the median of each ratio over the processes.
func runBenchProcesses(c *cli.Context, n int) error {
	for _, f := range []string{"serve", patchSweepFlag, "memory-only"} {
		if c.Bool(f) {
			return fmt.Errorf("--%s: --processes repeats the timed rounds only", f)
		}
	}
	w := c.App.Writer
	dir, err := os.MkdirTemp("", "onnx-tdb-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var results []benchResult
	for i := 0; i < n; i++ {
		file := filepath.Join(dir, fmt.Sprintf("p%d.json", i))
		cmd, err := benchSelf(c.Context, append(childArgs(c), "--"+ratiosFlag, file))
		if err != nil {
			return err
		}
		interruptible(cmd)
		cmd.Stdout, cmd.Stderr = w, c.App.ErrWriter
		fmt.Fprintf(w, "--- process %d of %d\n", i+1, n)
		if err := cmd.Run(); err != nil {
			if ctxErr := c.Context.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("bench: process %d of %d: %w", i+1, n, err)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("bench: process %d of %d wrote no results: %w", i+1, n, err)
		}
		var r benchResult
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("bench: process %d of %d: results: %w", i+1, n, err)
		}
		results = append(results, r)
	}
	return printAcrossProcesses(w, results)
}

// printAcrossProcesses prints, for every row the processes measured, the
// median of their ratios, the range, and each process's value; then the
// highest peak memory any process saw after each group.
func printAcrossProcesses(w io.Writer, results []benchResult) error {
	if len(results) == 0 {
		return errors.New("bench: no process measured anything")
	}
	fmt.Fprintf(w, "\nacross %d processes (each ratio the median of that process's rounds):\n", len(results))
	fmt.Fprintf(w, "%-12s %-10s %10s %17s   %s\n", "shape", "path", "vs whole", "range", "per process")
	for _, row := range results[0].Rows {
		var vals []float64
		per := ""
		for _, r := range results {
			i := slices.IndexFunc(r.Rows, func(x benchRow) bool { return x.Group == row.Group && x.Path == row.Path })
			if i < 0 {
				continue
			}
			vals = append(vals, r.Rows[i].Ratio)
			per += fmt.Sprintf(" %.3f", r.Rows[i].Ratio)
		}
		s := spreadOf(vals)
		fmt.Fprintf(w, "%-12s %-10s %10.3f %17s  %s\n", row.Group, row.Path, s.med, fmt.Sprintf("%.3f-%.3f", s.lo, s.hi), per)
	}
	for i, p := range results[0].Peaks {
		hi := p.Peak
		for _, r := range results[1:] {
			if i < len(r.Peaks) && r.Peaks[i].Group == p.Group {
				hi = max(hi, r.Peaks[i].Peak)
			}
		}
		fmt.Fprintf(w, "peak RSS up to %-12s at most %.2f x the weights in any process\n", p.Group, hi)
	}
	return nil
}
