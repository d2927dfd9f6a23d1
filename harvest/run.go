package harvest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/onnx-tdb/onnx-tdb/harvest/collect"
	"github.com/onnx-tdb/onnx-tdb/harvest/corpus"
	"github.com/onnx-tdb/onnx-tdb/harvest/queue"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// DefaultShardBatches is the default shard size in batches.
const DefaultShardBatches = 16

// Options describe a harvest job and how to run it.
type Options struct {
	Model  string   // as --model takes it; Open resolves it
	Corpus []string // .txt, .jsonl, .npy files, in stream order
	At     []string // POINT or POINT@LAYERS
	SAE    []string // POINT@LAYER=AUTOENCODER

	Context, Top, Random, Quantiles, PerQuantile, Batch int
	Seed                                                uint64
	ShardSize                                           int // examples per shard, a multiple of Batch (0: DefaultShardBatches batches)

	Out string // output folder

	NATS    string // external server URL; "" starts an embedded one storing in Out/.harvest/nats
	Workers int    // in-process workers: <0 means 1 with the embedded server and 0 with NATS
	Threads int    // goroutines an in-process worker folds activations with (0: GOMAXPROCS)
	// QuantileBudget is the memory the quantile boundaries may hold (0:
	// DefaultQuantileBudget): every example's maximum per unit while that
	// fits (exact), else a sketch while that fits (rank error ≤ 0.5%).
	QuantileBudget int64
	AckWait        time.Duration // 0: queue.DefaultAckWait
	Open           Opener        // required
	SAEOpts        []sae.Option

	Log      io.Writer        // notes (nil: none)
	Progress io.Writer        // progress bar, redrawn with '\r' (nil: none)
	OnServer func(url string) // called with the embedded server's URL once it runs
	Timing   *Timing          // when set, receives where the run spent its time

	afterBatch func() // tests: runs after every batch of the in-process workers
	sketchLeaf int    // tests: take quantile boundaries from a sketch with leaves of this size
}

// Run harvests: it plans the job, queues its shards, runs the in-process
// workers, waits for every partial, merges them and writes the records.
// Interrupted (ctx cancelled, or the process killed), it leaves the job
// resumable: running it again with the same options computes only the
// shards not yet stored.
func Run(ctx context.Context, o Options) error {
	if o.Open == nil {
		return errors.New("harvest: no model opener")
	}
	if o.Out == "" {
		return errors.New("harvest: no output folder (--out)")
	}
	m, err := o.Open(ctx, o.Model)
	if err != nil {
		return err
	}
	defer m.Close()
	p, err := plan(ctx, m, o)
	if err != nil {
		return err
	}
	defer p.close()
	done, err := claimOut(o.Out, p.job)
	if err != nil {
		return err
	}
	if done {
		o.logf("%s already holds this harvest (job %.16s): nothing to do", o.Out, p.job.ID)
		return nil
	}
	err = p.execute(ctx, m, o)
	if err == nil && o.NATS != "" {
		os.RemoveAll(filepath.Join(o.Out, StateDir)) // the claim; the embedded case removes its store itself
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("harvest interrupted (run again to resume): %w (%v)", ctx.Err(), err)
	}
	return err
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// planned is a job ready to run, with what the coordinator holds for it.
type planned struct {
	job    *Job
	corp   *corpus.Corpus
	saes   []*sae.Autoencoder
	vocab  func(int32) string
	manual *Manifest
	run    string // this run's id, for deduplicating its shard messages
}

func (p *planned) close() {
	for _, ae := range p.saes {
		if ae != nil {
			ae.Close()
		}
	}
}

// plan checks the options against the model and builds the job.
func plan(ctx context.Context, m *modelctx.Transformer, o Options) (*planned, error) {
	switch {
	case o.Context <= 0:
		return nil, fmt.Errorf("--context %d: want a positive window", o.Context)
	case m.Manifest().Config.NCtx > 0 && o.Context > m.Manifest().Config.NCtx:
		return nil, fmt.Errorf("--context %d: the model's context window is %d", o.Context, m.Manifest().Config.NCtx)
	case o.Top < 0 || o.Random < 0 || o.Quantiles < 0 || o.PerQuantile < 0:
		return nil, errors.New("--top, --random, --quantiles and --per-quantile must not be negative")
	case o.Batch <= 0:
		return nil, fmt.Errorf("--batch %d: want a positive batch", o.Batch)
	case o.ShardSize < 0 || o.ShardSize%o.Batch != 0:
		return nil, fmt.Errorf("shard size %d: want a multiple of the batch %d", o.ShardSize, o.Batch)
	case len(o.At) == 0 && len(o.SAE) == 0:
		return nil, fmt.Errorf("%w: give --at POINT[@LAYERS] or --sae POINT@LAYER=AE", ErrBadSite)
	}
	tok, err := textTokenizer(m)
	if err != nil {
		return nil, err
	}
	corp, err := corpus.Load(o.Corpus, o.Context, asCorpusTokenizer(tok))
	if err != nil {
		return nil, err
	}
	dims := m.Manifest().Config
	p := &planned{corp: corp, vocab: vocabulary(tok), run: atomicdir.Suffix()}
	var sites []SiteSpec
	seen := map[collect.SiteID]bool{}
	for _, a := range o.At {
		ss, err := parseAt(a, m.NLayers(), dims, m.HasSite)
		if err != nil {
			return nil, err
		}
		for _, s := range ss {
			if !seen[s.id()] {
				seen[s.id()] = true
				sites = append(sites, s)
			}
		}
	}
	saeLayers := map[int]string{}
	for _, v := range o.SAE {
		s, err := parseSAE(v, m.NLayers(), m.HasSite)
		if err != nil {
			p.close()
			return nil, err
		}
		if prev, ok := saeLayers[s.Layer]; ok {
			p.close()
			return nil, fmt.Errorf("%w: --sae %s: layer %d already has --sae %s (one SAE per layer in a job)", ErrBadSite, v, s.Layer, prev)
		}
		saeLayers[s.Layer] = v
		ae, err := sae.Open(ctx, s.SAE, o.SAEOpts...)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("--sae %s: %w", v, err)
		}
		p.saes = append(p.saes, ae)
		in, _ := hooks.Parse(s.SAEInput)
		if width, _ := unitsOf(in, dims); width != ae.NInputs {
			p.close()
			return nil, fmt.Errorf("%w: --sae %s: the autoencoder reads %d values, %s has %d", ErrBadSite, v, ae.NInputs, s.SAEInput, width)
		}
		s.Units = ae.NLatents
		sites = append(sites, s)
	}
	// Hook-point sites first, then SAE sites: align p.saes with the sites.
	all := make([]*sae.Autoencoder, len(sites))
	copy(all[len(sites)-len(p.saes):], p.saes)
	p.saes = all
	n := corp.N()
	sketchLeaf := 0
	if o.Quantiles > 0 && o.sketchLeaf > 0 {
		sketchLeaf = o.sketchLeaf
	} else if o.Quantiles > 0 {
		total := 0
		for _, s := range sites {
			total += s.Units
		}
		budget := o.QuantileBudget
		if budget <= 0 {
			budget = DefaultQuantileBudget
		}
		if need := int64(total) * int64(n) * 4; need > budget {
			leaf := collect.SketchLeafFor(n)
			if sk := collect.SketchBytes(total, n, leaf); sk > budget {
				p.close()
				return nil, fmt.Errorf("%w: quantile boundaries of %d units over %d examples need %d MiB exact or %d MiB as a sketch, over the %d MiB budget (harvest fewer sites, or raise the budget)",
					ErrTooBig, total, n, need>>20, sk>>20, budget>>20)
			}
			sketchLeaf = leaf
			o.logf("note: every example's maximum of %d units would take %d MiB (budget %d MiB): quantile boundaries come from a sketch with leaves of %d examples (at most %d MiB; rank error at most %.2f%%)",
				total, need>>20, budget>>20, leaf, collect.SketchBytes(total, n, leaf)>>20, 100*collect.SketchErrorBound(n, leaf))
		}
	}
	shard := o.ShardSize
	if shard == 0 {
		shard = DefaultShardBatches * o.Batch
	}
	hash, err := ModelHash(m)
	if err != nil {
		p.close()
		return nil, err
	}
	pq := o.PerQuantile
	if o.Quantiles == 0 {
		pq = 0
	}
	job := &Job{
		Version: Version, Model: o.Model, ModelHash: hash, Sites: sites,
		Params: collect.Params{Context: o.Context, Top: o.Top, Random: o.Random, Quantiles: o.Quantiles, PerQuantile: pq, Seed: o.Seed, SketchLeaf: sketchLeaf},
		Batch:  o.Batch, Examples: n, ShardSize: shard, TokensHash: tokensHash(corp.Tokens),
	}
	job.ID = job.computeID()
	p.job = job
	if o.Top > n || o.Random > n {
		o.logf("note: the corpus gives %d examples: top lists and random samples hold at most %d records (asked for %d and %d)", n, n, o.Top, o.Random)
	}
	p.manual = &Manifest{
		Format: "onnx-tdb-harvest", Version: Version, Job: job.ID, Model: o.Model, ModelHash: hash,
		Corpus: corp.Files, Context: o.Context, Examples: n, Tokens: len(corp.Tokens), StreamTokens: corp.StreamTokens,
		Params: job.Params, Batch: o.Batch, Points: sites, QuantileBoundaries: quantileMethod(job.Params, n),
	}
	return p, nil
}

// execute runs the job through NATS and writes its output.
func (p *planned) execute(ctx context.Context, m *modelctx.Transformer, o Options) (err error) {
	url := o.NATS
	workers := o.Workers
	var emb *queue.Embedded
	if url == "" {
		if emb, err = queue.StartEmbedded(filepath.Join(o.Out, StateDir, "nats"), 0); err != nil {
			return err
		}
		defer func() {
			emb.Close()
			if err == nil {
				os.RemoveAll(filepath.Join(o.Out, StateDir))
			}
		}()
		url = emb.URL()
		if workers < 0 {
			workers = 1
		}
	} else if workers < 0 {
		workers = 0
	}
	conn, err := queue.Connect(ctx, url, o.AckWait)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Setup(ctx, true); err != nil {
		return err
	}
	obs, err := conn.Bucket(ctx, p.job.ID, true)
	if err != nil {
		return err
	}
	if err := putJob(ctx, obs, p); err != nil {
		return err
	}
	if emb != nil {
		if workers == 0 {
			o.logf("embedded NATS server at %s: start workers with: onnx-tdb harvest worker --nats %s", url, url)
		}
		if o.OnServer != nil {
			o.OnServer(url)
		}
	}
	sub, _ := conn.NC.Subscribe(queue.ErrorsPrefix+p.job.ID, func(msg *nats.Msg) { o.logf("%s", msg.Data) })
	defer func() {
		if sub != nil {
			sub.Unsubscribe()
		}
	}()

	wctx, stopWorkers := context.WithCancel(ctx)
	werr := make(chan error, max(workers, 1))
	var wg sync.WaitGroup
	defer func() { stopWorkers(); wg.Wait() }()
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e := localWork(wctx, conn, m, p, o); e != nil && wctx.Err() == nil {
				werr <- e
			}
		}()
	}

	res := &result{job: p.job, vocab: p.vocab, tokens: p.corp.Tokens}
	for pass := 1; pass <= p.job.Passes(); pass++ {
		if pass == 2 {
			res.bounds = make([][]float32, len(res.pass1))
			for i, s := range res.pass1 {
				if res.bounds[i], err = s.Boundaries(); err != nil {
					return err
				}
			}
			if _, err := obs.PutBytes(ctx, boundsObject, encodeBounds(res.bounds)); err != nil {
				return fmt.Errorf("store quantile boundaries: %w", err)
			}
		}
		if err := p.queueMissing(ctx, conn, obs, pass); err != nil {
			return err
		}
		t0 := time.Now()
		if err := p.wait(ctx, obs, pass, o, werr); err != nil {
			return err
		}
		t1 := time.Now()
		merged, err := p.merge(ctx, obs, pass, res.bounds)
		if err != nil {
			return err
		}
		if o.Timing != nil {
			o.Timing.Passes = append(o.Timing.Passes, t1.Sub(t0))
			o.Timing.Merge += time.Since(t1)
		}
		if pass == 1 {
			res.pass1 = merged
		} else {
			res.pass2 = merged
		}
	}
	stopWorkers()
	wg.Wait()
	t0 := time.Now()
	if err := res.write(o.Out, p.manual); err != nil {
		return err
	}
	if o.Timing != nil {
		o.Timing.Write = time.Since(t0)
	}
	conn.DeleteBucket(context.WithoutCancel(ctx), p.job.ID)
	conn.Purge(context.WithoutCancel(ctx), p.job.ID)
	o.logf("wrote %s: %d examples, %d sites", o.Out, p.job.Examples, len(p.job.Sites))
	return nil
}

// localWork runs an in-process worker that shares the coordinator's model.
func localWork(ctx context.Context, conn *queue.Conn, m *modelctx.Transformer, p *planned, o Options) error {
	cons, err := conn.Setup(ctx, false)
	if err != nil {
		return err
	}
	w := &worker{conn: conn, opts: WorkerOptions{Open: o.Open, SAE: o.SAEOpts}, m: m, mRef: o.Model, mHash: p.job.ModelHash}
	w.cur = &shardRunner{m: m, job: p.job, saes: p.saes, tokens: p.corp.Tokens, afterBatch: o.afterBatch, threads: o.Threads}
	obs, err := conn.Bucket(ctx, p.job.ID, false)
	if err != nil {
		return err
	}
	w.obs = obs
	defer w.close()
	return conn.Work(ctx, cons, w.handle)
}

func putJob(ctx context.Context, obs jetstream.ObjectStore, p *planned) error {
	if _, err := obs.GetInfo(ctx, jobObject); err == nil {
		return nil // resuming
	}
	if _, err := obs.PutBytes(ctx, tokensObject, encodeInt32s(p.corp.Tokens)); err != nil {
		return fmt.Errorf("store the job's tokens: %w", err)
	}
	b, _ := jsonMarshal(p.job)
	if _, err := obs.PutBytes(ctx, jobObject, b); err != nil {
		return fmt.Errorf("store the job: %w", err)
	}
	return nil
}

// queueMissing publishes the shards of a pass whose partial is not stored.
func (p *planned) queueMissing(ctx context.Context, conn *queue.Conn, obs jetstream.ObjectStore, pass int) error {
	done, err := queue.Done(ctx, obs, pass)
	if err != nil {
		return err
	}
	if err := conn.Purge(ctx, p.job.ID); err != nil {
		return err
	}
	for i := 0; i < p.job.Shards(); i++ {
		first, count := p.job.ShardRange(i)
		s := queue.Shard{Job: p.job.ID, Pass: pass, Index: i, First: first, Count: count}
		if done[s.ID()] {
			continue
		}
		if err := conn.Publish(ctx, s, p.run); err != nil {
			return err
		}
	}
	return nil
}

// wait polls the stored partials until every shard of the pass is in.
func (p *planned) wait(ctx context.Context, obs jetstream.ObjectStore, pass int, o Options, werr <-chan error) error {
	total := p.job.Shards()
	bar := newBar(o.Progress, fmt.Sprintf("pass %d/%d", pass, p.job.Passes()), total, p.job.ShardSize*p.job.Params.Context)
	defer bar.finish()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for {
		done, err := queue.Done(ctx, obs, pass)
		if ctx.Err() != nil {
			return fmt.Errorf("harvest interrupted (%d/%d shards of pass %d stored; run again to resume): %w", n, total, pass, ctx.Err())
		}
		if err != nil {
			return err
		}
		n = 0
		for i := 0; i < total; i++ {
			first, count := p.job.ShardRange(i)
			if done[queue.PartialName(pass, first, count)] {
				n++
			}
		}
		bar.update(n)
		if n >= total {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harvest interrupted (%d/%d shards of pass %d stored; run again to resume): %w", n, total, pass, ctx.Err())
		case e := <-werr:
			return e
		case <-tick.C:
		}
	}
}

// merge reads every partial of a pass, in shard order, into one state.
func (p *planned) merge(ctx context.Context, obs jetstream.ObjectStore, pass int, bounds [][]float32) ([]*collect.Site, error) {
	sites := make([]*collect.Site, len(p.job.Sites))
	for i, s := range p.job.Sites {
		var b []float32
		if pass == 2 {
			b = bounds[i]
		}
		st, err := collect.NewSite(s.id(), s.Units, p.job.Params, pass, 0, p.job.Examples, b)
		if err != nil {
			return nil, err
		}
		sites[i] = st
	}
	all := &collect.Partial{Pass: pass, Count: p.job.Examples, Sites: sites}
	for i := 0; i < p.job.Shards(); i++ {
		first, count := p.job.ShardRange(i)
		name := queue.PartialName(pass, first, count)
		raw, err := obs.GetBytes(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("read partial %s: %w", name, err)
		}
		part, err := collect.Decode(raw)
		if err != nil {
			return nil, fmt.Errorf("partial %s: %w", name, err)
		}
		if err := all.Merge(part); err != nil {
			return nil, fmt.Errorf("partial %s: %w", name, err)
		}
	}
	return sites, nil
}
