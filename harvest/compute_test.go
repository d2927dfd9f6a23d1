package harvest

import (
	"context"
	"slices"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// A shard's forward passes stop at the first residual boundary after the
// last site the job reads: no later layer, no unembedding.
func TestShardsStopAfterTheirLastSite(t *testing.T) {
	m, err := modelctx.Open(goldenmodel.Dir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	n := m.NLayers()
	for _, c := range []struct {
		sites []SiteSpec
		stop  int // -1: the whole pass
	}{
		{[]SiteSpec{{Point: "mlp.post_act", Layer: 0}}, 1},
		{[]SiteSpec{{Point: "mlp.post_act", Layer: 0}, {Point: "attn.q", Layer: n - 1}}, n},
		{[]SiteSpec{{Point: "resid.torso.post_mlp", Layer: 0}}, 1}, // the boundary itself
		{[]SiteSpec{{Point: "resid.post_emb"}}, 0},
		{[]SiteSpec{{Point: "mlp.post_act", Layer: 0}, {Point: "resid.post_ln_f"}}, -1}, // after the last layer
		{[]SiteSpec{{Point: "sae.latents", Layer: 1, SAE: "x", SAEInput: "mlp.post_act"}}, 2},
	} {
		r := &shardRunner{m: m, job: &Job{Sites: c.sites}}
		opts, err := r.stopOption()
		if err != nil {
			t.Fatal(err)
		}
		if c.stop < 0 {
			if len(opts) != 0 {
				t.Errorf("%v: stops early, want the whole pass", c.sites)
			}
			continue
		}
		if len(opts) != 1 {
			t.Errorf("%v: runs the whole pass, want a stop at layer %d", c.sites, c.stop)
			continue
		}
		// Apply the option to a real pass: its output is the residual
		// entering layer c.stop, and no logits.
		out, err := m.Forward(context.Background(), [][]int{{1, 2, 3}}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		want, err := m.Forward(context.Background(), [][]int{{1, 2, 3}}, modelctx.StopAtLayer(c.stop))
		if err != nil {
			t.Fatal(err)
		}
		if out.Logits != nil || out.Resid == nil || !slices.Equal(out.Resid.Data, want.Resid.Data) {
			t.Errorf("%v: the pass does not stop at layer %d", c.sites, c.stop)
		}
	}
}

// A Collector folds the same examples into the same state call after call,
// reusing its memory, and starts afresh for examples of another length.
func TestCollectorReuse(t *testing.T) {
	m, err := modelctx.Open(goldenmodel.Dir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := NewCollector(m, []string{"mlp.post_act@1"}, 3, 2, 4, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	examples := func(n, T int) [][]int {
		out := make([][]int, n)
		for i := range out {
			out[i] = make([]int, T)
			for j := range out[i] {
				out[i][j] = (17 + 31*(i*T+j)) % 256
			}
		}
		return out
	}
	ctx := context.Background()
	first, err := c.Collect(ctx, examples(10, 6))
	if err != nil || first <= 0 {
		t.Fatalf("collect: %d bytes, %v", first, err)
	}
	again, err := c.Collect(ctx, examples(10, 6))
	if err != nil || again != first {
		t.Fatalf("the same examples again: %d bytes (first %d), %v", again, first, err)
	}
	longer, err := c.Collect(ctx, examples(10, 9))
	if err != nil || longer <= first {
		t.Fatalf("longer examples: %d bytes (shorter %d), %v", longer, first, err)
	}
	if _, err := c.Collect(ctx, nil); err == nil {
		t.Fatal("no examples accepted")
	}
}
