package modelctx

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"

	"github.com/onnx-tdb/onnx-tdb/export"
)

// BenchmarkSample reports new tokens per second (tok/s) when sampling 32
// tokens from 16-token prompts at batch 1 and 4 on a GPT-2-small-shaped
// model (random weights; exported once, ~500 MB, into a temporary folder).
// The original's PyTorch code makes about 16 tok/s at batch 1 and 52 at
// batch 4 on the 2-core reference machine.
//
//	go test -run XXX -bench Sample -benchtime 3x ./modelctx/
func BenchmarkSample(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "gpt2-small-random")
	if _, err := export.Write(context.Background(), gpt2.Random{Config: gpt2.Small, Seed: 1}, dir, export.WriteOptions{Name: "gpt2-small-random"}); err != nil {
		b.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	const promptLen, newTokens = 16, 32
	for _, batch := range []int{1, 4} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			// Warm-up (plan and sessions), then time whole Sample calls.
			if _, err := BenchSample(ctx, m, batch, promptLen, 2); err != nil {
				b.Fatal(err)
			}
			rows := make([][]int, batch)
			for i := range rows {
				for j := 0; j < promptLen; j++ {
					rows[i] = append(rows[i], (i*977+j*131)%50000)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.Sample(ctx, TokenPrompts(rows...), WithNumTokens(newTokens), WithSeed(uint64(i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch*newTokens)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
