package modelctx

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// SampleBench is the outcome of BenchSample.
type SampleBench struct {
	Batch, PromptLen, NewTokens int
	Elapsed                     time.Duration // the timed Sample call, prompt pass included
	TokensPerSec                float64       // Batch*NewTokens / Elapsed
}

// BenchSample measures sampling speed the way the original is usually
// timed: batch rows of promptLen random tokens (fixed seed), newTokens new
// tokens each at temperature 1 with a fixed seed, no hooks. One short
// warm-up call first builds the plan and its sessions; the timed call
// includes the prompt pass. It returns new tokens per second over all rows.
func BenchSample(ctx context.Context, m *Transformer, batch, promptLen, newTokens int) (SampleBench, error) {
	r := SampleBench{Batch: batch, PromptLen: promptLen, NewTokens: newTokens}
	if batch < 1 || promptLen < 1 || newTokens < 1 {
		return r, fmt.Errorf("%w: bench batch %d, prompt %d, new tokens %d (each must be >= 1)", ErrBadSampleOption, batch, promptLen, newTokens)
	}
	V := m.man.Config.NVocab
	if V <= 0 || V > 50256 {
		V = 50256 // below any special token of a 50257-token vocabulary
	}
	rng := rand.New(rand.NewPCG(1, 1))
	rows := make([][]int, batch)
	for b := range rows {
		rows[b] = make([]int, promptLen)
		for i := range rows[b] {
			rows[b][i] = rng.IntN(V)
		}
	}
	p := TokenPrompts(rows...)
	if _, err := m.Sample(ctx, p, WithNumTokens(min(newTokens, 2)), WithSeed(1)); err != nil {
		return r, fmt.Errorf("bench warm-up: %w", err)
	}
	start := time.Now()
	if _, err := m.Sample(ctx, p, WithNumTokens(newTokens), WithSeed(1)); err != nil {
		return r, fmt.Errorf("bench: %w", err)
	}
	r.Elapsed = time.Since(start)
	r.TokensPerSec = float64(batch*newTokens) / r.Elapsed.Seconds()
	return r, nil
}
