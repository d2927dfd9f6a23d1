package sae

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// GPT-2 small's MLP autoencoder shape: 32768 latents over d_ff = 3072.
const benchLatents, benchInputs, benchTokens = 32768, 3072, 128

// fastFill fills v with uniform values in [-scale, scale) (xorshift; the
// speed of the graphs does not depend on the values).
func fastFill(v []float32, seed uint64, scale float32) {
	x := seed*0x9E3779B97F4A7C15 | 1
	for i := range v {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		v[i] = (float32(x>>40)/float32(1<<24)*2 - 1) * scale
	}
}

// randomBigSAE writes a random GPT-2-small-sized MLP autoencoder into a
// private folder and opens it. The Go copy of the weights is released
// before the sessions open, so RSS afterwards is what the sessions hold.
func randomBigSAE(b *testing.B, act Activation) *Autoencoder {
	b.Helper()
	N, n := benchLatents, benchInputs
	p := &params{nLatents: N, nInputs: n, act: act,
		preBias: make([]float32, n), encoder: make([]float32, N*n), latentBias: make([]float32, N),
		decoder: make([]float32, n*N), frequency: ones(N), meanSquare: make([]float32, N), lastNonzero: make([]int64, N)}
	fastFill(p.preBias, 1, 0.1)
	fastFill(p.encoder, 2, 0.03)
	fastFill(p.latentBias, 3, 0.1)
	fastFill(p.decoder, 4, 0.03)
	ae, err := fromParams(p, "random", options{})
	if err != nil {
		b.Fatal(err)
	}
	p = nil
	debug.FreeOSMemory()
	b.Cleanup(func() { ae.Close() })
	return ae
}

// rssMB reads this process's resident memory (total, anonymous, file-backed).
func rssMB() (total, anon, file float64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			total = kb / 1024
		case "RssAnon:":
			anon = kb / 1024
		case "RssFile:":
			file = kb / 1024
		}
	}
	return total, anon, file
}

// BenchmarkEncode measures encode throughput (tokens/s) of a random
// 32768 × 3072 autoencoder on 128 tokens, and the resident memory once its
// encode and decode sessions are open (weights ≈ 2 × 384 MiB).
func BenchmarkEncode(b *testing.B) {
	ctx := context.Background()
	for _, act := range []Activation{{Name: ReLU}, {Name: TopK, K: 32, PostAct: ReLU}} {
		b.Run(act.Name, func(b *testing.B) {
			ae := randomBigSAE(b, act)
			x := hooks.Zeros(1, benchTokens, benchInputs)
			fastFill(x.Data, 5, 1)
			total0, anon0, _ := rssMB()
			start := time.Now()
			z, err := ae.Encode(ctx, x)
			if err != nil {
				b.Fatal(err)
			}
			openEncode := time.Since(start)
			totalE, anonE, fileE := rssMB()
			if _, err := ae.Decode(ctx, z); err != nil {
				b.Fatal(err)
			}
			totalD, anonD, fileD := rssMB()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := ae.Encode(ctx, x); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(benchTokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(openEncode.Seconds(), "first-encode-s")
			b.ReportMetric(totalE-total0, "rss-encode-MB")
			b.ReportMetric(totalD-total0, "rss-encode+decode-MB")
			b.Logf("RSS before %.0f MB (anon %.0f); after encode %.0f MB (anon %.0f, file %.0f); after decode %.0f MB (anon %.0f, file %.0f)",
				total0, anon0, totalE, anonE, fileE, totalD, anonD, fileD)
		})
	}
}

// BenchmarkDecode measures decode throughput on 128 tokens.
func BenchmarkDecode(b *testing.B) {
	ctx := context.Background()
	ae := randomBigSAE(b, Activation{Name: ReLU})
	x := hooks.Zeros(1, benchTokens, benchInputs)
	fastFill(x.Data, 5, 1)
	z, err := ae.Encode(ctx, x)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ae.Decode(ctx, z); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ae.Decode(ctx, z); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchTokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkForwardSplice measures the forward pass of a GPT-2-small-shaped
// random model on 1 × 128 tokens with no hooks and with a 32768 × 3072
// autoencoder spliced at mlp.post_act of layer 6 (add_error, and replace).
func BenchmarkForwardSplice(b *testing.B) {
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "gpt2-small-random")
	if _, err := export.Write(context.Background(), gpt2.Random{Config: gpt2.Small}, dir, export.WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	debug.FreeOSMemory()
	m, err := modelctx.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ae := randomBigSAE(b, Activation{Name: ReLU})
	rows := [][]int{make([]int, benchTokens)}
	for i := range rows[0] {
		rows[0][i] = (i * 7919) % 50257
	}
	site := hooks.Site{Point: hooks.MLP.PostAct, Layer: 6}
	for _, tc := range []struct {
		name  string
		setup func(h *hooks.Hooks)
	}{
		{"no-sae", func(*hooks.Hooks) {}},
		{"sae-add-error", func(h *hooks.Hooks) { Splice(h, ae, site, true) }},
		{"sae-replace", func(h *hooks.Hooks) { Splice(h, ae, site, false) }},
		{"sae-add-error-ablate", func(h *hooks.Hooks) {
			Splice(h, ae, site, true)
			h.Add(hooks.SAE.Latents, func(_ *hooks.Context, z *hooks.Tensor) (*hooks.Tensor, error) {
				return z, z.FillTrailing(0, 7)
			}, hooks.AtLayers(6))
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := hooks.New()
			tc.setup(h)
			if _, err := m.Forward(ctx, rows, modelctx.WithHooks(h)); err != nil { // plan and sessions
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.Forward(ctx, rows, modelctx.WithHooks(h)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(benchTokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
			total, _, _ := rssMB()
			b.ReportMetric(total, "rss-MB")
		})
	}
}

// SAELens-sized SAE: 24576 latents over d_model 768 (gpt2-small-res-jb).
const slLatents, slInputs = 24576, 768

// randomSAELensFolder converts a random 24576 × 768 SAE of one family
// (standard, jumprelu, topk, gated) into a folder under b.TempDir.
func randomSAELensFolder(b *testing.B, family string) *Autoencoder {
	b.Helper()
	N, n := slLatents, slInputs
	p := &saelensParamSet{n: n, N: N, m: n, encoder: make([]float32, N*n), latentBias: make([]float32, N),
		decoder: make([]float32, n*N), bDec: make([]float32, n)}
	fastFill(p.encoder, 2, 0.03)
	fastFill(p.latentBias, 3, 0.1)
	fastFill(p.decoder, 4, 0.03)
	fastFill(p.bDec, 1, 0.1)
	switch family {
	case FamilyStandard:
		p.act = Activation{Name: ReLU}
	case FamilyJumpReLU:
		p.act = Activation{Name: JumpReLU}
		p.threshold = make([]float32, N)
		fastFill(p.threshold, 6, 0.05)
	case FamilyTopK:
		p.act = Activation{Name: TopK, K: 32, PostAct: ReLU}
	case FamilyGated:
		p.act = Activation{Name: Gated}
		p.magEncoder, p.magBias = make([]float32, N*n), make([]float32, N)
		fastFill(p.magEncoder, 7, 0.03)
		fastFill(p.magBias, 8, 0.1)
	}
	dir := filepath.Join(b.TempDir(), family)
	m := folderManifest{Source: "random", NInputs: n, NLatents: N, Activation: p.act, Family: family}
	if err := writeFolder(dir, m, func(ww *weightWriter) error { return writeSAELens(ww, p) }); err != nil {
		b.Fatal(err)
	}
	ae, err := openFolder(dir, "random", options{}, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ae.Close() })
	return ae
}

// BenchmarkSAELensEncode measures encode throughput of 24576-latent SAEs
// on d_model 768 at 1×128 tokens, per family (the JumpReLU goal is ≥ 0.9 of
// the ReLU SAE's tokens/s, TopK ≥ 0.8).
func BenchmarkSAELensEncode(b *testing.B) {
	ctx := context.Background()
	for _, family := range []string{FamilyStandard, FamilyJumpReLU, FamilyTopK, FamilyGated} {
		b.Run(family, func(b *testing.B) {
			ae := randomSAELensFolder(b, family)
			x := hooks.Zeros(1, benchTokens, slInputs)
			fastFill(x.Data, 5, 1)
			if _, err := ae.Encode(ctx, x); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := ae.Encode(ctx, x); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(benchTokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkSAELensEncodeRatio alternates a ReLU SAE's encode with a
// JumpReLU's and a TopK's (24576 × 768, 1×128 tokens) so that a noisy
// machine slows all alike, and reports their throughput ratios to ReLU
// (goals: JumpReLU ≥ 0.9, TopK ≥ 0.8).
func BenchmarkSAELensEncodeRatio(b *testing.B) {
	ctx := context.Background()
	families := []string{FamilyStandard, FamilyJumpReLU, FamilyTopK}
	aes := make([]*Autoencoder, len(families))
	for i, f := range families {
		aes[i] = randomSAELensFolder(b, f)
	}
	x := hooks.Zeros(1, benchTokens, slInputs)
	fastFill(x.Data, 5, 1)
	spent := make([]time.Duration, len(aes))
	for _, ae := range aes {
		if _, err := ae.Encode(ctx, x); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, ae := range aes {
			start := time.Now()
			if _, err := ae.Encode(ctx, x); err != nil {
				b.Fatal(err)
			}
			spent[j] += time.Since(start)
		}
	}
	b.ReportMetric(float64(benchTokens*b.N)/spent[0].Seconds(), "relu-tokens/s")
	b.ReportMetric(spent[0].Seconds()/spent[1].Seconds(), "jumprelu/relu")
	b.ReportMetric(spent[0].Seconds()/spent[2].Seconds(), "topk/relu")
}
