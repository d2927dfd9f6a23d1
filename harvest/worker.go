package harvest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/onnx-tdb/onnx-tdb/harvest/collect"
	"github.com/onnx-tdb/onnx-tdb/harvest/queue"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// Opener opens the model a job names (a folder, a checkpoint, a name or a
// URL, resolved as the CLI's --model is).
type Opener func(ctx context.Context, model string) (*modelctx.Transformer, error)

// WorkerOptions configure Work.
type WorkerOptions struct {
	NATS    string        // server URL
	Model   string        // open this model instead of the one each job names ("" : the job's)
	Open    Opener        // required
	SAE     []sae.Option  // options for opening the jobs' autoencoders
	AckWait time.Duration // 0: queue.DefaultAckWait
	Log     io.Writer     // one line per shard (nil: quiet)
	// Threads is how many goroutines fold a shard's activations (0:
	// GOMAXPROCS); give the model's thread count so a worker of one thread
	// uses one core.
	Threads int
	// AfterBatch, when set, runs after every batch (tests use it to slow a worker down).
	AfterBatch func()
}

// ReadyLine starts the line a worker logs once it is connected and, when
// WorkerOptions.Model names one, has its model open: the moment it can
// take shards at full speed.
const ReadyLine = "harvest worker: ready"

// worker computes shards for whatever job they belong to, keeping the
// model, autoencoders, tokens and boundaries of the current job.
type worker struct {
	conn *queue.Conn
	opts WorkerOptions

	mu      sync.Mutex
	m       *modelctx.Transformer
	mRef    string
	mHash   string
	ownM    bool
	cur     *shardRunner
	curSAEs bool // cur.saes are owned by the worker
	obs     jetstream.ObjectStore
}

// Work runs a worker against a NATS server until ctx ends or a shard fails
// (then the shard goes back to the queue and the error is returned).
// A worker whose model differs from a job's refuses its shards with an
// error wrapping ErrModelMismatch.
func Work(ctx context.Context, o WorkerOptions) error {
	if o.Open == nil {
		return errors.New("harvest worker: no model opener")
	}
	conn, err := queue.Connect(ctx, o.NATS, o.AckWait)
	if err != nil {
		return err
	}
	defer conn.Close()
	cons, err := conn.Setup(ctx, false)
	if err != nil {
		return err
	}
	w := &worker{conn: conn, opts: o}
	defer w.close()
	if o.Model != "" {
		// Open the model now: a worker that cannot fails at once, and the
		// first shard does not wait for it.
		if err := w.openModel(ctx, o.Model); err != nil {
			return err
		}
		w.logf("%s: model %s (hash %.16s)", ReadyLine, o.Model, w.mHash)
	} else {
		w.logf("%s: each job's model opens with its first shard", ReadyLine)
	}
	return conn.Work(ctx, cons, w.handle)
}

// openModel makes ref the worker's model, closing one it opened before.
func (w *worker) openModel(ctx context.Context, ref string) error {
	if w.m != nil && w.mRef == ref {
		return nil
	}
	if w.ownM && w.m != nil {
		w.m.Close()
	}
	w.m = nil
	m, err := w.opts.Open(ctx, ref)
	if err != nil {
		return fmt.Errorf("open model %s: %w", ref, err)
	}
	h, err := ModelHash(m)
	if err != nil {
		m.Close()
		return err
	}
	w.m, w.mRef, w.mHash, w.ownM = m, ref, h, true
	return nil
}

func (w *worker) close() {
	w.dropJob()
	if w.ownM && w.m != nil {
		w.m.Close()
	}
}

func (w *worker) dropJob() {
	if w.cur != nil && w.curSAEs {
		for _, ae := range w.cur.saes {
			if ae != nil {
				ae.Close()
			}
		}
	}
	w.cur, w.obs = nil, nil
}

func (w *worker) logf(format string, args ...any) {
	if w.opts.Log != nil {
		fmt.Fprintf(w.opts.Log, format+"\n", args...)
	}
}

// handle computes one shard and stores its partial.
func (w *worker) handle(ctx context.Context, s queue.Shard) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, err := w.runner(ctx, s.Job)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		w.logf("shard %s of job %.16s: the job is finished or removed; dropping the shard", s.ID(), s.Job)
		return nil
	}
	if err != nil {
		return err
	}
	name := s.ID()
	if _, err := w.obs.GetInfo(ctx, name); err == nil {
		return nil // finished before (a redelivered or re-queued shard)
	}
	if s.Pass == 2 && r.bounds == nil {
		if r.bounds, err = loadBounds(ctx, w.obs, r.job); err != nil {
			return err
		}
	}
	first, count := s.First, s.Count
	if err := r.job.checkRange(first, count); err != nil {
		return err
	}
	w.logf("shard %s start", name)
	p, err := r.run(ctx, s.Pass, first, count)
	if err != nil {
		return err
	}
	if err := storePartial(ctx, w.obs, name, p); err != nil {
		return err
	}
	r.recycle(p)
	w.logf("shard %s done", name)
	return nil
}

// storePartial streams p's encoding into the object store under name (a
// large state is never held twice in memory).
func storePartial(ctx context.Context, obs jetstream.ObjectStore, name string, p *collect.Partial) error {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := p.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	_, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name}, pr)
	pr.CloseWithError(errors.New("store ended")) // unblocks the encoder if Put stopped reading
	<-done
	if err != nil {
		return fmt.Errorf("store partial %s: %w", name, err)
	}
	return nil
}

// runner returns the shard runner of job id, loading the job on first use.
func (w *worker) runner(ctx context.Context, id string) (*shardRunner, error) {
	if w.cur != nil && w.cur.job.ID == id {
		return w.cur, nil
	}
	w.dropJob()
	obs, err := w.conn.Bucket(ctx, id, false)
	if err != nil {
		return nil, err
	}
	job, tokens, err := loadJob(ctx, obs, id)
	if err != nil {
		return nil, err
	}
	ref := w.opts.Model
	if ref == "" {
		ref = job.Model
	}
	if err := w.openModel(ctx, ref); err != nil {
		return nil, fmt.Errorf("job %.16s: %w", id, err)
	}
	if w.mHash != job.ModelHash {
		return nil, fmt.Errorf("%w: %w: job %.16s wants model %s (hash %.16s), this worker's %s has hash %.16s",
			queue.ErrRefused, ErrModelMismatch, id, job.Model, job.ModelHash, ref, w.mHash)
	}
	saes, err := openSAEs(ctx, job, w.opts.SAE)
	if err != nil {
		return nil, err
	}
	w.cur = &shardRunner{m: w.m, job: job, saes: saes, tokens: tokens, afterBatch: w.opts.AfterBatch, threads: w.opts.Threads}
	w.curSAEs, w.obs = true, obs
	return w.cur, nil
}

// openSAEs opens the autoencoder of every SAE site (nil elsewhere).
func openSAEs(ctx context.Context, job *Job, opts []sae.Option) ([]*sae.Autoencoder, error) {
	out := make([]*sae.Autoencoder, len(job.Sites))
	for i, s := range job.Sites {
		if s.SAE == "" {
			continue
		}
		ae, err := sae.Open(ctx, s.SAE, opts...)
		if err != nil {
			for _, a := range out {
				if a != nil {
					a.Close()
				}
			}
			return nil, fmt.Errorf("sae %s: %w", s.SAE, err)
		}
		out[i] = ae
	}
	return out, nil
}

const (
	jobObject    = "job.json"
	tokensObject = "tokens"
	boundsObject = "bounds"
)

func loadJob(ctx context.Context, obs jetstream.ObjectStore, id string) (*Job, []int32, error) {
	raw, err := obs.GetBytes(ctx, jobObject)
	if err != nil {
		return nil, nil, fmt.Errorf("job %.16s: read its description: %w", id, err)
	}
	var job Job
	if err := jsonUnmarshal(raw, &job); err != nil {
		return nil, nil, fmt.Errorf("job %.16s: %w", id, err)
	}
	if job.ID != id {
		return nil, nil, fmt.Errorf("job %.16s: its bucket holds job %.16s", id, job.ID)
	}
	if err := job.Check(); err != nil {
		return nil, nil, err
	}
	tb, err := obs.GetBytes(ctx, tokensObject)
	if err != nil {
		return nil, nil, fmt.Errorf("job %.16s: read its tokens: %w", id, err)
	}
	tokens, err := decodeInt32s(tb, job.Examples*job.Params.Context)
	if err != nil {
		return nil, nil, fmt.Errorf("job %.16s: tokens: %w", id, err)
	}
	if tokensHash(tokens) != job.TokensHash {
		return nil, nil, fmt.Errorf("job %.16s: its tokens do not match their hash", id)
	}
	return &job, tokens, nil
}

func encodeInt32s(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

func decodeInt32s(b []byte, n int) ([]int32, error) {
	if len(b) != 4*n {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), 4*n)
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

func encodeBounds(bounds [][]float32) []byte {
	var b []byte
	for _, s := range bounds {
		for _, x := range s {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return b
}

func loadBounds(ctx context.Context, obs jetstream.ObjectStore, job *Job) ([][]float32, error) {
	raw, err := obs.GetBytes(ctx, boundsObject)
	if err != nil {
		return nil, fmt.Errorf("job %.16s: read quantile boundaries: %w", job.ID, err)
	}
	q := job.Params.Quantiles - 1
	out := make([][]float32, len(job.Sites))
	off := 0
	for i, s := range job.Sites {
		n := s.Units * q
		if off+4*n > len(raw) {
			return nil, fmt.Errorf("job %.16s: quantile boundaries truncated", job.ID)
		}
		out[i] = make([]float32, n)
		for k := range out[i] {
			out[i][k] = math.Float32frombits(binary.LittleEndian.Uint32(raw[off+4*k:]))
		}
		off += 4 * n
	}
	if off != len(raw) {
		return nil, fmt.Errorf("job %.16s: quantile boundaries: %d trailing bytes", job.ID, len(raw)-off)
	}
	return out, nil
}
