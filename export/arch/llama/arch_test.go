package llama_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/llama"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// exportFixture writes a fixture folder, exports it and opens it.
func exportFixture(t testing.TB, f fixture, seed uint64) (*model, *modelctx.Transformer) {
	t.Helper()
	src := t.TempDir()
	m := f.write(t, src, seed)
	ck, err := llama.OpenCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	out := filepath.Join(t.TempDir(), "exported")
	if _, err := export.Write(context.Background(), ck, out, export.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := modelctx.Open(out, modelctx.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return m, tr
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		if !math.IsInf(x, 0) {
			m = math.Max(m, math.Abs(x))
		}
	}
	return m
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// TestMatchesReference runs random models with grouped-query attention,
// head_dim given or not, llama3 and linear rope scaling, tied and untied
// unembeddings, float32, float16 and bfloat16 shards, and compares every hook point
// with a float64 loop-by-loop reference.
func TestMatchesReference(t *testing.T) {
	cases := []struct {
		name string
		f    fixture
	}{
		{"gqa_llama3_tied_f32", tinyGQA},
		{"mqa_linear_bf16_shards", tinyLinear},
		{"mha_f16_untied", tinyF16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, tr := exportFixture(t, tc.f, 1)
			toks := []int{3, 17, 9, 0, 41, 22, 8}
			want := refRun(m, toks)
			out, err := tr.Forward(context.Background(), [][]int{toks}, modelctx.Capture(modelctx.AllPoints))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, site := range tr.Sites() {
				ref, ok := want[site.String()]
				if !ok {
					continue
				}
				got := out.Activations[site]
				if site.Point == hooks.LogitsPoint {
					got = out.Logits
				}
				if got == nil || len(got.Data) != len(ref) {
					t.Fatalf("%s: got %v values, want %d", site, got, len(ref))
				}
				if _, fail := golden.Diff(got.Data, toF32(ref), golden.Tolerance(maxAbs(ref))); fail != "" {
					t.Errorf("%s: %s", site, fail)
				}
				n++
			}
			if n != 19*tc.f.layers+5 {
				t.Errorf("compared %d points", n)
			}
			for _, missing := range []hooks.Point{hooks.LnAttnPostMeanSubtraction, hooks.LnFPostMeanSubtraction} {
				if tr.HasSite(hooks.Site{Point: missing, Layer: 0}) || tr.HasSite(hooks.Site{Point: missing, Layer: -1}) {
					t.Errorf("%s present; an RMSNorm has no mean subtraction", missing)
				}
			}
		})
	}
}

// TestLeftPaddedRowsAsAlone checks that each row of a left-padded batch of
// different lengths gets the logits it gets alone, and that greedy
// sampling of the batch (with the KV cache) gives each row its own tokens.
func TestLeftPaddedRowsAsAlone(t *testing.T) {
	_, tr := exportFixture(t, tinyGQA, 2)
	rows := [][]int{{5, 6, 7, 8, 9, 10}, {11, 12}, {13, 14, 15, 16}}
	batch, err := tr.Forward(context.Background(), rows, modelctx.WithPad(modelctx.PadLeft))
	if err != nil {
		t.Fatal(err)
	}
	V, T := batch.Logits.Shape[2], batch.Logits.Shape[1]
	res, err := tr.Sample(context.Background(), modelctx.TokenPrompts(rows...), modelctx.WithNumTokens(6), modelctx.WithTemperature(0))
	if err != nil {
		t.Fatal(err)
	}
	for b, r := range rows {
		alone, err := tr.Forward(context.Background(), [][]int{r})
		if err != nil {
			t.Fatal(err)
		}
		off := T - len(r)
		got := batch.Logits.Data[(b*T+off)*V : (b+1)*T*V]
		if _, fail := golden.Diff(got, alone.Logits.Data, 1e-4); fail != "" {
			t.Errorf("row %d: %s", b, fail)
		}
		one, err := tr.Sample(context.Background(), modelctx.TokenPrompts(r), modelctx.WithNumTokens(6), modelctx.WithTemperature(0))
		if err != nil {
			t.Fatal(err)
		}
		if !equalInts(one.Tokens[0], res.Tokens[b]) {
			t.Errorf("row %d: batch sampled %v, alone %v", b, res.Tokens[b], one.Tokens[0])
		}
		// The cached continuation agrees with a full recompute.
		full := append(append([]int(nil), r...), one.Tokens[0][:5]...)
		fo, err := tr.Forward(context.Background(), [][]int{full})
		if err != nil {
			t.Fatal(err)
		}
		for s := 0; s < 6; s++ {
			p := len(r) - 1 + s
			if am := argmax(fo.Logits.Data[p*V : (p+1)*V]); am != one.Tokens[0][s] {
				t.Errorf("row %d step %d: cached %d, recomputed %d", b, s, one.Tokens[0][s], am)
			}
		}
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// TestExportCancelled stops an export whose context is done and leaves no
// folder behind.
func TestExportCancelled(t *testing.T) {
	src := t.TempDir()
	tinyGQA.write(t, src, 8)
	ck, err := llama.OpenCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(t.TempDir(), "exported")
	if _, err := export.Write(ctx, ck, out, export.WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// TestCheckpointShapeMismatch refuses weights that do not fit the config.
func TestCheckpointShapeMismatch(t *testing.T) {
	src := t.TempDir()
	tinyGQA.write(t, src, 9)
	cfg := tinyGQA.config()
	cfg["intermediate_size"] = 41
	writeJSONFile(t, filepath.Join(src, "config.json"), cfg)
	ck, err := llama.OpenCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	_, err = export.Write(context.Background(), ck, filepath.Join(t.TempDir(), "x"), export.WriteOptions{})
	if !errors.Is(err, export.ErrCheckpoint) || !strings.Contains(err.Error(), "gate_proj") {
		t.Errorf("error %v, want ErrCheckpoint naming gate_proj", err)
	}
	if _, err := llama.OpenCheckpoint(t.TempDir()); !errors.Is(err, llama.ErrNotCheckpoint) {
		t.Errorf("empty folder: %v", err)
	}
}

func BenchmarkForward(b *testing.B) {
	_, tr := exportFixture(b, tinyGQA, 1)
	rows := [][]int{{1, 2, 3, 4, 5, 6, 7, 8}, {9, 10, 11, 12, 13, 14, 15, 16}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.Forward(context.Background(), rows); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSampleKVCache(b *testing.B) {
	_, tr := exportFixture(b, tinyGQA, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.Sample(context.Background(), modelctx.TokenPrompts([]int{1, 2, 3, 4}), modelctx.WithNumTokens(16), modelctx.WithTemperature(0)); err != nil {
			b.Fatal(err)
		}
	}
}
