package main

import (
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/harvest/harvesttest"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// Every reference case, harvested through the CLI, reproduces the
// reference records (golden/harvest README's comparison rules).
func TestHarvestGoldenCases(t *testing.T) {
	t.Setenv("ONNX_TDB_SPIN", "0")
	dir := golden.RequireShared(t, "harvest")
	for _, c := range harvesttest.Cases(t, dir) {
		t.Run(c.Name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if msg, err := runCLI(t, append([]string{"harvest"}, c.CLIArgs(dir, out)...)...); err != nil {
				t.Fatalf("harvest: %v\n%s", err, msg)
			}
			harvesttest.Check(t, dir, c, out)
		})
	}
}
