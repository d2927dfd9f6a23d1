package harvest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/harvest/queue"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
)

// testOptions harvests two sites of the golden model over the reference
// corpus, with quantiles (two passes), in many small shards.
func testOptions(t *testing.T, out string) Options {
	t.Helper()
	t.Setenv("ONNX_TDB_SPIN", "0")
	dir := golden.RequireShared(t, "harvest")
	return Options{
		Model:   goldenmodel.Dir(t),
		Corpus:  []string{filepath.Join(dir, "corpus", "essay.txt"), filepath.Join(dir, "corpus", "notes.jsonl")},
		At:      []string{"mlp.post_act@1", "resid.post_emb"},
		Context: 16, Top: 5, Random: 4, Quantiles: 3, PerQuantile: 2, Seed: 3, Batch: 4, ShardSize: 8,
		Out: out, Workers: -1, Open: openExported, AckWait: 2 * time.Second,
	}
}

// tree reads every file under dir except the NATS state, by relative path.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel == StateDir {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, a, b map[string][]byte, what string) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d files, want %d", what, len(b), len(a))
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			t.Fatalf("%s: %s differs", what, k)
		}
	}
}

// worker is one worker process: the test binary re-executed.
type workerProc struct {
	cmd    *exec.Cmd
	starts atomic.Int32
	done   chan struct{}
	mu     sync.Mutex
	lines  []string
}

func startWorker(t *testing.T, url, model string, delayMS int) *workerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), workerEnv+"="+url, modelEnv+"="+model, delayEnv+"="+fmt.Sprint(delayMS),
		"ONNX_TDB_THREADS=1", "ONNX_TDB_SPIN=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &workerProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
			if strings.HasSuffix(sc.Text(), " start") {
				w.starts.Add(1)
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-w.done
		cmd.Wait()
	})
	return w
}

// A job run by three worker processes, one of them killed in the middle of
// a shard, gives byte for byte the output of a single-process run with
// another shard size.
func TestThreeWorkerProcessesOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	ref := filepath.Join(t.TempDir(), "ref")
	o := testOptions(t, ref)
	o.ShardSize = 32
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	want := tree(t, ref)
	if _, err := os.Stat(filepath.Join(ref, StateDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the finished job left its state folder: %v", err)
	}

	out := filepath.Join(t.TempDir(), "dist")
	o = testOptions(t, out)
	o.Workers = 0
	var workers []*workerProc
	started := make(chan []*workerProc, 1)
	o.OnServer = func(url string) {
		var ws []*workerProc
		for i := 0; i < 3; i++ {
			ws = append(ws, startWorker(t, url, o.Model, 40))
		}
		started <- ws
	}
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		workers = <-started // read by the test after killed is closed
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if workers[0].starts.Load() >= 3 {
				time.Sleep(20 * time.Millisecond) // inside the shard's first batch
				workers[0].cmd.Process.Kill()
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := Run(ctx, o); err != nil {
		t.Fatal(err)
	}
	<-killed
	sameTree(t, want, tree(t, out), "3 workers, one killed")
	w0 := workers[0]
	<-w0.done
	w0.mu.Lock()
	lines := w0.lines
	w0.mu.Unlock()
	if len(lines) == 0 || !strings.HasSuffix(lines[len(lines)-1], " start") {
		t.Fatalf("worker 0 was not killed inside a shard: its last lines %v", lines[max(0, len(lines)-3):])
	}
	if n := workers[1].starts.Load() + workers[2].starts.Load(); n == 0 {
		t.Fatal("the other workers computed nothing")
	}
}

// With --nats, the job goes to a server that is already running, and an
// in-process worker (or any other) computes it: the same bytes again.
func TestExternalServer(t *testing.T) {
	ref := filepath.Join(t.TempDir(), "ref")
	if err := Run(context.Background(), testOptions(t, ref)); err != nil {
		t.Fatal(err)
	}
	srv, err := queue.StartEmbedded(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "out")
	o := testOptions(t, out)
	o.NATS, o.Workers, o.ShardSize = srv.URL(), 1, 16
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	sameTree(t, tree(t, ref), tree(t, out), "external server")
	if _, err := os.Stat(filepath.Join(out, StateDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the finished job left its claim: %v", err)
	}
}

// Quantile boundaries from the sketch: the output is the same whatever the
// shard size, and the manifest says how the boundaries were found; a job
// whose sketch would not fit its budget either is refused.
func TestQuantileSketch(t *testing.T) {
	root := t.TempDir()
	var trees []map[string][]byte
	for _, shard := range []int{8, 12, 44} {
		o := testOptions(t, filepath.Join(root, fmt.Sprint(shard)))
		o.ShardSize, o.sketchLeaf = shard, 8
		if err := Run(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		trees = append(trees, tree(t, o.Out))
	}
	sameTree(t, trees[0], trees[1], "shards of 12")
	sameTree(t, trees[0], trees[2], "shards of 44")
	var m Manifest
	if err := jsonUnmarshal(trees[0][manifestFile], &m); err != nil {
		t.Fatal(err)
	}
	if m.Params.SketchLeaf != 8 || !strings.HasPrefix(m.QuantileBoundaries, "sketch with leaves of 8 examples") {
		t.Fatalf("manifest: sketch leaf %d, quantile boundaries %q", m.Params.SketchLeaf, m.QuantileBoundaries)
	}

	o := testOptions(t, filepath.Join(root, "exact"))
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	exact := tree(t, o.Out)
	if err := jsonUnmarshal(exact[manifestFile], &m); err != nil || m.QuantileBoundaries != "exact" {
		t.Fatalf("manifest of an exact job: %q, %v", m.QuantileBoundaries, err)
	}

	o = testOptions(t, filepath.Join(root, "small"))
	o.QuantileBudget = 1024
	if err := Run(context.Background(), o); !errors.Is(err, ErrTooBig) {
		t.Fatalf("a budget of 1 KiB: %v, want ErrTooBig", err)
	}
}
