package modelctx

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// BenchmarkBackward reports the cost of Transformer.Backward on a
// GPT-2-small-shaped model at 1x128 against a plain forward pass measured in
// the same run ("x-forward"): the whole call (its forward pass included)
// from a logit loss, with the gradient returned at every hook point, at
// resid.post_emb only, and at mlp.post_act with the activations captured
// (an attribution).
//
//	go test -run XXX -bench Backward -benchtime 5x ./modelctx/
func BenchmarkBackward(b *testing.B) {
	dir := smallModel(b)
	m, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	rows := [][]int{make([]int, 128)}
	for j := range rows[0] {
		rows[0][j] = (1000 + 7919*j) % 50257
	}
	loss := LogitLoss(0, -1, 464)
	mlp := &Filter{Points: []hooks.Point{hooks.MLPPostAct}}
	var fwd time.Duration
	cases := []struct {
		name string
		run  func() error
	}{
		{"forward", func() error { _, err := m.Forward(ctx, rows); return err }},
		{"backward-all-points", func() error { _, err := m.Backward(ctx, rows, loss); return err }},
		{"backward-post-emb", func() error {
			_, err := m.Backward(ctx, rows, loss, GradsAt(&Filter{Points: []hooks.Point{hooks.ResidPostEmb}}))
			return err
		}},
		{"attribution-mlp-post-act", func() error {
			_, err := m.Backward(ctx, rows, loss, GradsAt(mlp), Capture(mlp))
			return err
		}},
	}
	for _, c := range cases {
		b.Run(fmt.Sprintf("1x128/%s", c.name), func(b *testing.B) {
			if err := c.run(); err != nil { // builds the plans
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.run(); err != nil {
					b.Fatal(err)
				}
			}
			per := b.Elapsed() / time.Duration(b.N)
			if c.name == "forward" {
				fwd = per
			} else if fwd > 0 {
				b.ReportMetric(float64(per)/float64(fwd), "x-forward")
			}
			b.ReportMetric(peakRSSMB(), "peakMB")
		})
	}
}
