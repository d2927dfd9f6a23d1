package modelctx

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

var (
	smallOnce sync.Once
	smallDir  string
	smallErr  error
)

// smallModel exports a random GPT-2-small-shaped model once per test binary.
func smallModel(b *testing.B) string {
	smallOnce.Do(func() {
		var tmp string
		tmp, smallErr = osMkdirTemp()
		if smallErr != nil {
			return
		}
		smallDir = filepath.Join(tmp, "gpt2-small-random")
		_, smallErr = export.Write(context.Background(), gpt2.Random{Config: gpt2.Small, Seed: 1}, smallDir, export.WriteOptions{Name: "gpt2-small-random", Whole: true})
	})
	if smallErr != nil {
		b.Fatal(smallErr)
	}
	return smallDir
}

func peakRSSMB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkForward reports tokens/s and peak RSS of a forward pass of a
// GPT-2-small-shaped model at 1x128 and 4x128: the exported model as one
// plain graph, and the per-block model with no hooks, one writing hook and
// every hook point read.
//
//	go test -run XXX -bench Forward -benchtime 5x ./modelctx/
func BenchmarkForward(b *testing.B) {
	dir := smallModel(b)
	whole, err := OpenWhole(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer whole.Close()
	m, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	oneWrite := hooks.New()
	oneWrite.Add(hooks.MLP.PostAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		x.Data[0] += 0
		return x, nil
	}, hooks.AtLayers(6))
	allRead := hooks.New()
	for _, p := range hooks.Points() {
		allRead.Observe(p, func(*hooks.Context, *hooks.Tensor) error { return nil })
	}
	ctx := context.Background()
	for _, shape := range [][2]int{{1, 128}, {4, 128}} {
		rows := make([][]int, shape[0])
		for i := range rows {
			for j := 0; j < shape[1]; j++ {
				rows[i] = append(rows[i], (1000+7919*(i*shape[1]+j))%50257)
			}
		}
		for _, c := range []struct {
			name string
			m    *Transformer
			opts []ForwardOption
		}{
			{"whole", whole, nil},
			{"no-hooks", m, nil},
			{"one-write", m, []ForwardOption{WithHooks(oneWrite)}},
			{"all-read", m, []ForwardOption{WithHooks(allRead)}},
		} {
			b.Run(fmt.Sprintf("%dx%d/%s", shape[0], shape[1], c.name), func(b *testing.B) {
				if _, err := c.m.Forward(ctx, rows, c.opts...); err != nil { // builds the plan
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := c.m.Forward(ctx, rows, c.opts...); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*shape[0]*shape[1])/b.Elapsed().Seconds(), "tok/s")
				b.ReportMetric(peakRSSMB(), "peakMB")
			})
		}
	}
}
