package analysis

import (
	"context"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

func benchSpec() PatchSpec {
	clean := make([]int, 16)
	for i := range clean {
		clean[i] = 1000 + 37*i
	}
	corrupted := append([]int(nil), clean...)
	corrupted[3], corrupted[9] = 5335, 1757
	return PatchSpec{Clean: clean, Corrupted: corrupted, Point: hooks.PostMLP, Per: PerPosition,
		Metric: Metric{Kind: LogitDiff, Target: 5335, Distractor: 1757}}
}

// BenchmarkPatchSweep is a residual patching sweep of the golden model:
// 2 layers x 16 positions (the bench command's --patch-sweep does GPT-2
// small).
func BenchmarkPatchSweep(b *testing.B) {
	for _, whole := range []bool{false, true} {
		name := "partial-runs"
		if whole {
			name = "whole-passes"
		}
		b.Run(name, func(b *testing.B) {
			m := openGolden(b)
			spec := benchSpec()
			spec.FullPasses = whole
			ctx := context.Background()
			if _, err := m.Patch(ctx, spec); err != nil { // builds the plans
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.Patch(ctx, spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecomposeAndAttribute is the Go work of dla on a captured run.
func BenchmarkDecomposeAndAttribute(b *testing.B) {
	m := openGolden(b)
	ctx := context.Background()
	spec := benchSpec()
	c, err := m.Run(ctx, [][]int{spec.Clean})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.DecomposeResid(ctx, PerHead); err != nil { // reads the weights once
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := c.DecomposeResid(ctx, PerHead)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.LogitAttrs(d, spec.Metric); err != nil {
			b.Fatal(err)
		}
	}
}
