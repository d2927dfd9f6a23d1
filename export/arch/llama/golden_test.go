package llama_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/llama"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

var (
	exportOnce sync.Once
	exportTmp  string
	exportDir  string
	exportErr  error
)

// exported writes the golden Llama folder as an exported model once per
// test binary.
func exported(t testing.TB) string {
	t.Helper()
	src := golden.LoadHFLlama(t).Dir
	exportOnce.Do(func() {
		ck, err := llama.OpenCheckpoint(src)
		if err != nil {
			exportErr = err
			return
		}
		defer ck.Close()
		if exportTmp, exportErr = os.MkdirTemp("", "onnx-tdb-llama-"); exportErr != nil {
			return
		}
		exportDir = filepath.Join(exportTmp, "llama")
		_, exportErr = export.Write(context.Background(), ck, exportDir, export.WriteOptions{Name: "hf-llama"})
	})
	if exportErr != nil {
		t.Fatal(exportErr)
	}
	return exportDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if exportTmp != "" {
		os.RemoveAll(exportTmp)
	}
	os.Exit(code)
}

func openGolden(t testing.TB) *modelctx.Transformer {
	t.Helper()
	dev, id := goldenmodel.Device(t) // ONNX_TDB_TEST_DEVICE=cuda runs it on the GPU
	m, err := modelctx.Open(exported(t), modelctx.WithThreads(1), modelctx.WithDevice(dev, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestGoldenPointsAndLogits(t *testing.T) {
	c := golden.LoadHFLlama(t)
	m := openGolden(t)
	for _, in := range c.Inputs {
		out, err := m.Forward(context.Background(), in.Tokens, modelctx.Capture(modelctx.AllPoints))
		if err != nil {
			t.Fatal(err)
		}
		if len(in.Activations) == 0 {
			t.Fatalf("input %s: no reference activations", in.Name)
		}
		for _, a := range in.Activations {
			pt, err := hooks.Parse(a.Point)
			if err != nil {
				t.Fatal(err)
			}
			site := hooks.Site{Point: pt, Layer: -1}
			if a.Layer != nil {
				site.Layer = *a.Layer
			}
			got := out.Logits
			if a.Point != "logits" {
				got = out.Activations[site]
			}
			if got == nil {
				t.Fatalf("input %s: %s not captured", in.Name, site)
			}
			a.CheckFile(t, in.Name+" "+site.String(), got.Data, got.Shape)
		}
	}
}

func TestGoldenAblations(t *testing.T) {
	c := golden.LoadHFLlama(t)
	m := openGolden(t)
	n := 0
	for _, in := range c.Inputs {
		for _, iv := range in.Interventions {
			h := ablation(t, iv.Ablate)
			out, err := m.Forward(context.Background(), in.Tokens, modelctx.WithHooks(h))
			if err != nil {
				t.Fatal(err)
			}
			iv.Logits.CheckFile(t, in.Name+" "+iv.Name, out.Logits.Data, out.Logits.Shape)
			n++
		}
	}
	if n == 0 {
		t.Fatal("no ablation cases")
	}
}

func ablation(t *testing.T, target string) *hooks.Hooks {
	t.Helper()
	site, idx, err := hooks.ParseEditTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	h := hooks.New()
	hooks.Edit{Site: site, Index: idx, Kind: hooks.Ablate}.Register(h)
	return h
}

// TestGoldenGreedySampling samples the reference prompts as one left-padded
// batch with the KV cache, and each prompt alone: every row gives the
// reference tokens.
func TestGoldenGreedySampling(t *testing.T) {
	c := golden.LoadHFLlama(t)
	m := openGolden(t)
	for _, sc := range c.Sampling {
		var opts []modelctx.SampleOption
		opts = append(opts, modelctx.WithNumTokens(sc.NumTokens), modelctx.WithTemperature(0))
		if sc.Ablate != "" {
			opts = append(opts, modelctx.WithHooks(ablation(t, sc.Ablate)))
		}
		res, err := m.Sample(context.Background(), modelctx.TokenPrompts(sc.Prompts...), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if res.Strings != nil {
			t.Errorf("%s: strings %q without a tokenizer", sc.Name, res.Strings)
		}
		for i, want := range sc.Tokens {
			if !equalInts(res.Tokens[i], want) {
				t.Errorf("%s batch row %d: %v, want %v", sc.Name, i, res.Tokens[i], want)
			}
			alone, err := m.Sample(context.Background(), modelctx.TokenPrompts(sc.Prompts[i]), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !equalInts(alone.Tokens[0], want) {
				t.Errorf("%s row %d alone: %v, want %v", sc.Name, i, alone.Tokens[0], want)
			}
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
