package harvest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/onnx-tdb/onnx-tdb/harvest/collect"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// Timing receives where a Run spent its time (Options.Timing).
type Timing struct {
	Passes []time.Duration // per pass: from queueing the shards to the last partial stored
	Merge  time.Duration   // reading and merging the partials
	Write  time.Duration   // writing the records and the manifest
}

// Collector runs a worker's compute path on an opened model with no
// queue: pass 1 of some sites over examples (token windows of one length),
// in batches, folded into one partial state and encoded as a worker
// stores it. Like a worker, it keeps its state's memory from one call to
// the next. Benchmarks compare it with plain forward passes over the same
// batches.
type Collector struct {
	m     *modelctx.Transformer
	sites []SiteSpec
	p     collect.Params
	batch int
	r     *shardRunner
}

// NewCollector plans pass 1 of the sites at (as --at takes them) with the
// given top and random sample sizes; threads is how many goroutines fold
// the activations (0: GOMAXPROCS).
func NewCollector(m *modelctx.Transformer, at []string, top, random, batch int, seed uint64, threads int) (*Collector, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("collect: batch %d", batch)
	}
	dims := m.Manifest().Config
	c := &Collector{m: m, p: collect.Params{Top: top, Random: random, Seed: seed}, batch: batch}
	for _, a := range at {
		ss, err := parseAt(a, m.NLayers(), dims, m.HasSite)
		if err != nil {
			return nil, err
		}
		c.sites = append(c.sites, ss...)
	}
	c.r = &shardRunner{m: m, saes: make([]*sae.Autoencoder, len(c.sites)), threads: threads}
	return c, nil
}

// Collect folds the examples into one partial state, encodes it and
// returns the encoding's size.
func (c *Collector) Collect(ctx context.Context, examples [][]int) (int64, error) {
	if len(examples) == 0 {
		return 0, errors.New("collect: no examples")
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
	p := c.p
	p.Context = T
	job := &Job{Sites: c.sites, Params: p, Batch: c.batch, Examples: len(examples)}
	if c.r.job == nil || c.r.job.Params != p || c.r.job.Examples != job.Examples {
		c.r.spare = nil // another shape of state
	}
	c.r.job, c.r.tokens = job, tokens
	part, err := c.r.run(ctx, 1, 0, len(examples))
	if err != nil {
		return 0, err
	}
	n, err := part.WriteTo(io.Discard)
	c.r.recycle(part)
	return n, err
}
