package harvest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/internal/syncbuf"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/harvest/corpus"
	"github.com/onnx-tdb/onnx-tdb/harvest/queue"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// Bad input gives one clear error naming the thing at fault, before any
// output is written.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	for _, c := range []struct {
		name string
		edit func(o *Options)
		want error
		says string
	}{
		{"empty corpus", func(o *Options) { o.Corpus = []string{empty} }, corpus.ErrEmpty, "fewer than one window"},
		{"corpus shorter than a window", func(o *Options) { o.Context = 64; o.Corpus = o.Corpus[:1]; o.Corpus[0] = writeText(t, dir, "Hello.") }, corpus.ErrEmpty, "fewer than one window"},
		{"unknown point", func(o *Options) { o.At = []string{"mlp.post_acts"} }, ErrBadSite, "mlp.post_acts"},
		{"unknown layer", func(o *Options) { o.At = []string{"mlp.post_act@2"} }, ErrBadSite, "layer 2"},
		{"key axis", func(o *Options) { o.At = []string{"attn.qk_probs@0"} }, ErrBadSite, "key axis"},
		{"once point with layers", func(o *Options) { o.At = []string{"resid.post_emb@0"} }, ErrBadSite, "takes no @layers"},
		{"no site", func(o *Options) { o.At = nil }, ErrBadSite, "--at"},
		{"two SAEs at a layer", func(o *Options) {
			sae := filepath.Join(golden.Dir(), "sae", "mlp_post_act.layer1.pt")
			o.At, o.SAE = nil, []string{"mlp.post_act@1=" + sae, "mlp.post_act@1=" + sae}
		}, ErrBadSite, "one SAE per layer"},
		{"NATS unreachable", func(o *Options) { o.NATS = "nats://127.0.0.1:1" }, queue.ErrUnreachable, "127.0.0.1:1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			o := testOptions(t, out)
			c.edit(&o)
			err := Run(context.Background(), o)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v, want %v saying %q", err, c.want, c.says)
			}
			if _, err := os.Stat(filepath.Join(out, manifestFile)); err == nil {
				t.Fatal("a failed job wrote a manifest")
			}
		})
	}
}

func writeText(t *testing.T, dir, s string) string {
	p := filepath.Join(dir, "short.txt")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// --top larger than the corpus gives every example, said once.
func TestTopLargerThanExamples(t *testing.T) {
	dir := t.TempDir()
	ids := filepath.Join(dir, "ids.npy")
	if err := npy.Write(ids, []int{3, 16}, make([]float32, 48)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	o := testOptions(t, out)
	o.Corpus, o.At, o.Top, o.Quantiles = []string{ids}, []string{"resid.post_emb"}, 10, 0
	var log bytes.Buffer
	o.Log = &log
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "at most 3 records"); n != 1 {
		t.Fatalf("note said %d times:\n%s", n, log.String())
	}
	r, err := LoadRecord(context.Background(), out, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.MostPositive) != 3 || len(r.RandomSample) != 3 {
		t.Fatalf("%d top and %d random records, want 3 and 3", len(r.MostPositive), len(r.RandomSample))
	}
}

// An output folder of another job is refused; the same job finished is
// left as it is; an interrupted job resumes without recomputing the
// shards it stored, and gives the same bytes.
func TestOutputFolderAndResume(t *testing.T) {
	ref := filepath.Join(t.TempDir(), "ref")
	if err := Run(context.Background(), testOptions(t, ref)); err != nil {
		t.Fatal(err)
	}
	want := tree(t, ref)

	o := testOptions(t, ref)
	o.Seed = 4
	if err := Run(context.Background(), o); !errors.Is(err, ErrOtherJob) {
		t.Fatalf("another job into a finished folder: got %v", err)
	}
	var log bytes.Buffer
	o = testOptions(t, ref)
	o.Log = &log
	if err := Run(context.Background(), o); err != nil || !strings.Contains(log.String(), "nothing to do") {
		t.Fatalf("the same job again: %v, %q", err, log.String())
	}
	sameTree(t, want, tree(t, ref), "finished job run again")
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644)
	if err := Run(context.Background(), testOptions(t, other)); !errors.Is(err, ErrOtherJob) {
		t.Fatalf("a folder of other files: got %v", err)
	}

	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithCancel(context.Background())
	var batches atomic.Int32
	o = testOptions(t, out)
	o.afterBatch = func() {
		if batches.Add(1) == 12 { // 6 of pass 1's 30 shards
			cancel()
		}
	}
	if err := Run(ctx, o); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("interrupted run: got %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, manifestFile)); err == nil {
		t.Fatal("an interrupted job wrote its manifest")
	}
	o2 := testOptions(t, out)
	o2.Seed = 9
	if err := Run(context.Background(), o2); !errors.Is(err, ErrOtherJob) {
		t.Fatalf("another job into an unfinished folder: got %v", err)
	}
	batches.Store(0)
	o = testOptions(t, out)
	o.afterBatch = func() { batches.Add(1) }
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	// 60 batches per pass; the first run stored at least 5 shards (10 batches).
	if n := batches.Load(); n > 110 {
		t.Fatalf("the resumed job ran %d batches: it recomputed stored shards", n)
	}
	sameTree(t, want, tree(t, out), "resumed job")
}

// A worker whose model differs refuses the shards with a clear error, and
// the coordinator shows it.
func TestWorkerWithAnotherModel(t *testing.T) {
	other := filepath.Join(t.TempDir(), "other")
	cfg := gpt2.Small
	cfg.NLayers, cfg.DModel, cfg.NHeads, cfg.DHead, cfg.DFF, cfg.NCtx = 2, 64, 4, 16, 256, 64
	if _, err := export.Write(context.Background(), gpt2.Random{Config: cfg, Seed: 5}, other, export.WriteOptions{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	o := testOptions(t, out)
	o.Workers = 0
	urls := make(chan string, 1)
	o.OnServer = func(u string) { urls <- u }
	var log syncbuf.Buffer
	o.Log = &log
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, o) }()
	var url string
	select {
	case url = <-urls:
	case err := <-ran:
		t.Fatalf("job ended early: %v", err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	err := Work(wctx, WorkerOptions{NATS: url, Model: other, Open: openExported})
	if !errors.Is(err, ErrModelMismatch) || !strings.Contains(err.Error(), "model") {
		t.Fatalf("worker with another model: got %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-ran
	if !strings.Contains(log.String(), "differs") {
		t.Fatalf("the coordinator did not show the refusal: %q", log.String())
	}
}

// A shard of a job that is gone (finished and removed) is dropped, and the
// worker goes on.
func TestWorkerDropsShardOfGoneJob(t *testing.T) {
	srv, err := queue.StartEmbedded(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	conn, err := queue.Connect(ctx, srv.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Setup(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := conn.Publish(ctx, queue.Shard{Job: strings.Repeat("ab", 32), Pass: 1, First: 0, Count: 4}, "r"); err != nil {
		t.Fatal(err)
	}
	var log syncbuf.Buffer
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err = Work(wctx, WorkerOptions{NATS: srv.URL(), Open: openExported, Log: &log})
	if err != nil || !strings.Contains(log.String(), "dropping the shard") {
		t.Fatalf("worker: %v, log %q", err, log.String())
	}
}
