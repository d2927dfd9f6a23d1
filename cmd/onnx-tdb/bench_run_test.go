package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// bench runs end to end on the golden model with two instances of each
// model: the rounds cycle through them and every path gets a ratio row.
func TestBenchRunsOnInstances(t *testing.T) {
	out, err := runCLI(t, "bench", "-m", golden.ModelDir(), "--shapes", "1x3", "--paths", "whole,no-hooks,all-read",
		"--sample", "1", "--min-time", "0s", "--max-time", "1s", "--min-runs", "2", "--instances", "2")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "rounds cycle through 2 instance(s)") {
		t.Errorf("no instances line:\n%s", out)
	}
	var rows []string
	for _, line := range strings.Split(out, "\n") {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	for _, row := range []string{"1x3 whole ", "1x3 no-hooks ", "1x3 all-read ", "decode b1 whole ", "decode b1 no-hooks "} {
		if !slices.ContainsFunc(rows, func(r string) bool { return strings.HasPrefix(r, row) }) {
			t.Errorf("no row %q:\n%s", row, out)
		}
	}
	if _, err := runCLI(t, "bench", "-m", golden.ModelDir(), "--instances", "0"); err == nil {
		t.Error("--instances 0 accepted")
	}
}

// bench --processes runs the measurement in fresh processes (here this
// test binary as the program) and prints each ratio's median over them
// with every process's value; a process that fails fails the command.
func TestBenchAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two processes that open the model")
	}
	self := benchSelf
	t.Cleanup(func() { benchSelf = self })
	benchSelf = helperSelf
	args := []string{"bench", "-m", golden.ModelDir(), "--shapes", "1x3", "--paths", "whole,all-read",
		"--sample", "", "--min-time", "0s", "--max-time", "1s", "--min-runs", "2", "--instances", "1", "--processes", "2"}
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"--- process 1 of 2", "--- process 2 of 2", "across 2 processes", "peak RSS up to 1x3"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	_, summary, _ := strings.Cut(out, "across 2 processes")
	found := false
	for _, line := range strings.Split(summary, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == "1x3" && f[1] == "all-read" {
			found = true
			for _, v := range append(f[2:3], f[4:]...) {
				if x, err := strconv.ParseFloat(v, 64); err != nil || x <= 0 {
					t.Errorf("ratio %q in %q", v, line)
				}
			}
		}
	}
	if !found {
		t.Errorf("no all-read row with two processes' ratios in:\n%s", summary)
	}

	bad := slices.Clone(args)
	bad[slices.Index(bad, "whole,all-read")] = "whole,nonsense"
	if out, err := runCLI(t, bad...); err == nil || !strings.Contains(err.Error(), "process 1 of 2") {
		t.Errorf("a failing process: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "bench", "-m", golden.ModelDir(), "--memory-only", "--processes", "2"); err == nil {
		t.Error("--memory-only with --processes accepted")
	}
}
