package main

import (
	"slices"
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
