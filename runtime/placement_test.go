package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	goruntime "runtime"
	"slices"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

func TestMain(m *testing.M) {
	code := m.Run()
	goldenmodel.Cleanup()
	os.Exit(code)
}

// openGolden opens the golden model on dev, closed when the test ends.
func openGolden(t *testing.T, dev runtime.Device, opts ...modelctx.Option) *modelctx.Transformer {
	t.Helper()
	m, err := modelctx.Open(goldenmodel.Dir(t), append([]modelctx.Option{modelctx.WithDevice(dev, 0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// closeTo fails the test unless got matches want within the golden
// tolerance.
func closeTo(t *testing.T, what string, got, want []float32) {
	t.Helper()
	maxAbs := 0.0
	for _, v := range want {
		maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
	}
	worst, fail := golden.Diff(got, want, golden.Tolerance(maxAbs))
	if fail != "" {
		t.Fatalf("%s: %s", what, fail)
	}
	t.Logf("%s: worst |diff| %.2g", what, worst)
}

// placementRun runs the golden model with a write at one layer and reads at
// others, the kind of plan whose segments pass tensors no hook sees (the
// residual stream past a cut, the stage boundaries). It returns the logits
// followed by everything the observers saw.
func placementRun(t *testing.T, dev runtime.Device) []float32 {
	t.Helper()
	m := openGolden(t, dev)
	h := hooks.New()
	h.Add(hooks.MLPPostAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		out := x.Clone()
		for i := range out.Data {
			out.Data[i] = out.Data[i]*0.5 + 0.25
		}
		return out, nil
	}, hooks.AtLayers(0))
	var seen []float32
	for _, p := range []hooks.Point{hooks.AttnQKProbs, hooks.PostAttn} {
		h.Observe(p, func(_ *hooks.Context, x *hooks.Tensor) error {
			seen = append(seen, x.Data...)
			return nil
		}, hooks.AtLayers(1))
	}
	out, err := m.Forward(context.Background(), [][]int{{5, 6, 7, 8, 9}, {10, 11}}, modelctx.WithHooks(h))
	if dev == runtime.CUDA && errors.Is(err, runtime.ErrCUDAUnavailable) {
		t.Skipf("SKIP: no usable CUDA provider here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return append(slices.Clone(out.Logits.Data), seen...)
}

// TestDevicePlacementOnCPU runs the CUDA engine's placement (tensors only
// later segments read stay in device memory, through IO bindings) with CPU
// memory standing in for the GPU's: the results must be identical to the
// plain path's, and some outputs must really have taken the bound path.
func TestDevicePlacementOnCPU(t *testing.T) {
	plain := placementRun(t, runtime.CPU)
	restore := runtime.BindOnCPU()
	defer restore()
	before := runtime.OutputsOnDevice()
	bound := placementRun(t, runtime.CPU)
	if runtime.OutputsOnDevice() == before {
		t.Fatal("no segment output was placed on the device: the bound path was not exercised")
	}
	if !slices.Equal(plain, bound) {
		t.Fatal("bound path differs from the plain path")
	}
}

// TestDevicePlacementCUDA runs the same plan on the GPU, where the tensors
// no hook sees stay in device memory between segments, and compares with
// the CPU (it skips without a usable CUDA provider).
func TestDevicePlacementCUDA(t *testing.T) {
	before := runtime.OutputsOnDevice()
	gpu := placementRun(t, runtime.CUDA)
	if runtime.OutputsOnDevice() == before {
		t.Fatal("no segment output was kept on the GPU")
	}
	closeTo(t, "cuda against cpu", gpu, placementRun(t, runtime.CPU))
}

// TestStageCuts checks that Options.StageCuts cuts a plan with no hook
// at all at the residual boundaries (one session for the embedding, then one
// per layer), and that the results do not change.
func TestStageCuts(t *testing.T) {
	run := func(opts ...modelctx.Option) ([]float32, int64) {
		m := openGolden(t, runtime.CPU, opts...)
		before := runtime.SessionsCreated()
		out, err := m.Forward(context.Background(), [][]int{{5, 6, 7, 8}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Logits.Data, runtime.SessionsCreated() - before
	}
	fused, n1 := run()
	staged, n2 := run(modelctx.WithRuntime(runtime.Options{StageCuts: true}))
	if n1 != 2 { // everything up to the final norm, and the unembedding (Graph.Head)
		t.Errorf("fused plan made %d sessions, want 2", n1)
	}
	if want := int64(1 + 2 + 1); n2 != want { // embedding, the golden model's 2 layers (the last with the final norm), the unembedding (Graph.Head)
		t.Errorf("stage-cut plan made %d sessions, want %d", n2, want)
	}
	closeTo(t, "stage-cut plan against the fused one", staged, fused)
}

// TestPlansShareSegments checks that plans share the sessions of segments
// they have in common: every plan ends with the same unembedding segment,
// which is opened once (each further session over it would have ONNX
// Runtime pack the largest weight again), and results do not change.
func TestPlansShareSegments(t *testing.T) {
	m := openGolden(t, runtime.CPU)
	rows := [][]int{{5, 6, 7, 8}}
	before := runtime.SessionsCreated()
	plain, err := m.Forward(context.Background(), rows)
	if err != nil {
		t.Fatal(err)
	}
	if n := runtime.SessionsCreated() - before; n != 2 {
		t.Fatalf("a plan without hooks made %d sessions, want 2 (the body and the unembedding)", n)
	}
	identity := func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) { return x, nil }
	for layer, want := range []int64{2, 2} {
		h := hooks.New()
		h.Add(hooks.MLPPostAct, identity, hooks.AtLayers(layer))
		before = runtime.SessionsCreated()
		hooked, err := m.Forward(context.Background(), rows, modelctx.WithHooks(h))
		if err != nil {
			t.Fatal(err)
		}
		// Cut at the hook and before the unembedding: up to the hook, from
		// it to the final norm's output, the unembedding, which both plans
		// take from the plan without hooks.
		if n := runtime.SessionsCreated() - before; n != want {
			t.Fatalf("a plan with a writing hook at layer %d made %d sessions, want %d", layer, n, want)
		}
		closeTo(t, "an identity hook's logits against the plain plan's", hooked.Logits.Data, plain.Logits.Data)
	}
	if got := m.Engine().PlanCount(); got != 3 {
		t.Fatalf("%d plans, want 3", got)
	}
}

// sampleRun samples greedily from the golden model with the KV cache, a
// writing hook at one layer on every step, and returns the tokens and every
// step's logits as the logits hook saw them.
func sampleRun(t *testing.T, dev runtime.Device) ([][]int, []float32) {
	t.Helper()
	m := openGolden(t, dev)
	h := hooks.New()
	h.Add(hooks.MLPPostAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		for i := range x.Data {
			x.Data[i] *= 0.75
		}
		return x, nil
	}, hooks.AtLayers(1))
	var logits []float32
	h.Observe(hooks.Logits, func(_ *hooks.Context, x *hooks.Tensor) error {
		logits = append(logits, x.Data...)
		return nil
	})
	res, err := m.Sample(context.Background(), modelctx.TokenPrompts([]int{5, 6, 7, 8}, []int{9, 10}),
		modelctx.WithNumTokens(6), modelctx.WithTemperature(0), modelctx.WithHooks(h))
	if dev == runtime.CUDA && errors.Is(err, runtime.ErrCUDAUnavailable) {
		t.Skipf("SKIP: no usable CUDA provider here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return res.Tokens, logits
}

// TestKVCachePlacementOnCPU samples with the KV cache kept as the CUDA
// engine keeps it (present K/V placed on the device, fed back as the next
// step's past without a copy), CPU memory standing in for the GPU's.
func TestKVCachePlacementOnCPU(t *testing.T) {
	plainTok, plainLogits := sampleRun(t, runtime.CPU)
	restore := runtime.BindOnCPU()
	defer restore()
	before := runtime.OutputsOnDevice()
	tok, logits := sampleRun(t, runtime.CPU)
	if runtime.OutputsOnDevice() == before {
		t.Fatal("no output was placed on the device")
	}
	if !slices.Equal(plainLogits, logits) || fmt.Sprint(tok) != fmt.Sprint(plainTok) {
		t.Fatalf("sampling with the cache on the device differs: tokens %v vs %v", tok, plainTok)
	}
	// With no hook the plan is the body and the unembedding: only the kept
	// cache and the unembedding's input can be placed on the device.
	m := openGolden(t, runtime.CPU)
	before = runtime.OutputsOnDevice()
	if _, err := m.Sample(context.Background(), modelctx.TokenPrompts([]int{5, 6}), modelctx.WithNumTokens(3), modelctx.WithTemperature(0)); err != nil {
		t.Fatal(err)
	}
	if got, want := runtime.OutputsOnDevice()-before, int64(2*2+1); got != want { // present K and V of 2 layers, the head's input
		t.Fatalf("%d outputs placed on the device, want the %d present K/V and the head's input", got, want)
	}
}

// TestKVCacheCUDA samples on the GPU, the cache kept there, and compares
// with the CPU (it skips without a usable CUDA provider).
func TestKVCacheCUDA(t *testing.T) {
	gpuTok, gpuLogits := sampleRun(t, runtime.CUDA)
	cpuTok, cpuLogits := sampleRun(t, runtime.CPU)
	if fmt.Sprint(gpuTok) != fmt.Sprint(cpuTok) {
		t.Fatalf("tokens on cuda %v, on cpu %v", gpuTok, cpuTok)
	}
	closeTo(t, "cuda logits against cpu", gpuLogits, cpuLogits)
}

func goldenDir(t *testing.T) string { return goldenmodel.Dir(t) }

func goroutines() int { return goruntime.NumGoroutine() }

func goexit() { goruntime.Goexit() }
