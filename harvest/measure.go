package harvest

import (
	"context"
	"fmt"
	"time"

	"github.com/onnx-tdb/onnx-tdb/harvest/collect"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// Timing receives where a Run spent its time (Options.Timing).
type Timing struct {
	Passes []time.Duration // per pass: from queueing the shards to the last partial stored
	Merge  time.Duration   // reading and merging the partials
	Write  time.Duration   // writing the records and the manifest
}

// Collect runs a worker's compute path on an opened model with no queue:
// pass 1 of the sites at (as --at takes them) over the examples (token
// windows of one length), in batches, folded into one partial state and
// encoded as a worker stores it. It returns the encoded size. Benchmarks
// compare it with plain forward passes over the same batches.
func Collect(ctx context.Context, m *modelctx.Transformer, at []string, examples [][]int, top, random, batch int, seed uint64) (int, error) {
	if len(examples) == 0 || batch <= 0 {
		return 0, fmt.Errorf("collect: %d examples, batch %d", len(examples), batch)
	}
	cfg := m.Manifest().Config
	dims := map[hooks.Dim]int{hooks.Model: cfg.DModel, hooks.Heads: cfg.NHeads, hooks.HeadDim: cfg.DHead,
		hooks.FF: cfg.DFF, hooks.Vocab: cfg.NVocab, hooks.One: 1}
	var sites []SiteSpec
	for _, a := range at {
		ss, err := parseAt(a, m.NLayers(), dims, m.HasSite)
		if err != nil {
			return 0, err
		}
		sites = append(sites, ss...)
	}
	T := len(examples[0])
	tokens := make([]int32, 0, len(examples)*T)
	for _, e := range examples {
		if len(e) != T {
			return 0, fmt.Errorf("collect: examples of %d and %d tokens", T, len(e))
		}
		for _, id := range e {
			tokens = append(tokens, int32(id))
		}
	}
	job := &Job{Sites: sites, Params: collect.Params{Context: T, Top: top, Random: random, Seed: seed}, Batch: batch, Examples: len(examples)}
	r := &shardRunner{m: m, job: job, saes: make([]*sae.Autoencoder, len(sites)), tokens: tokens}
	p, err := r.run(ctx, 1, 0, len(examples))
	if err != nil {
		return 0, err
	}
	return len(p.Encode()), nil
}
