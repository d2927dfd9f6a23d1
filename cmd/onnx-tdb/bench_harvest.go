package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/harvest"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/urfave/cli/v2"
)

func benchHarvestCommand() *cli.Command {
	return &cli.Command{
		Name: "harvest",
		Usage: "harvest throughput: the worker's compute path (every layer's mlp.post_act, top/random 20) against plain forwards of the same batches, in one run; " +
			"then a queued harvest computed by 2 worker processes of 1 thread against 1",
		Flags: []cli.Flag{
			modelFlag(),
			&cli.BoolFlag{Name: "random-gpt2-small", Usage: "benchmark a random GPT-2-small-shaped model (exported once into the cache)"},
			&cli.IntFlag{Name: "context", Value: 64, Usage: "tokens per example"},
			&cli.IntFlag{Name: "batch", Value: 32, Usage: "examples per forward pass"},
			&cli.IntFlag{Name: "batches", Value: 2, Usage: "batches per timed run"},
			&cli.IntFlag{Name: "min-runs", Value: 6, Usage: "rounds of the interleaved single-process comparison"},
			&cli.StringFlag{Name: "workers-at", Value: "resid.torso.delta_mlp", Usage: "what the worker-process comparison harvests (few units keep its output small)"},
			&cli.IntFlag{Name: "worker-shards", Value: 4, Usage: "shards in the worker-process comparison (0: skip it)"},
			&cli.IntFlag{Name: "worker-shard-batches", Value: 4, Usage: "batches per shard in the worker-process comparison"},
			&cli.BoolFlag{Name: "workers-only", Usage: "skip the single-process comparison"},
			cpuProfileFlag(),
		},
		Action: withCPUProfile(runBenchHarvest),
	}
}

func benchExamples(n, T, nVocab int) [][]int {
	rows := make([][]int, n)
	for i := range rows {
		rows[i] = make([]int, T)
		for j := range rows[i] {
			rows[i][j] = (1000 + 7919*(i*T+j)) % nVocab
		}
	}
	return rows
}

func runBenchHarvest(c *cli.Context) error {
	m, dir, err := benchModel(c)
	if err != nil {
		return err
	}
	T, B := c.Int("context"), c.Int("batch")
	if c.Bool("workers-only") {
		m.Close()
		return benchWorkers(c, dir, T, B)
	}
	ex := benchExamples(B*c.Int("batches"), T, m.Manifest().Config.NVocab)
	w := c.App.Writer
	fmt.Fprintf(w, "model %s, %d examples of %d tokens, batch %d\n", dir, len(ex), T, B)
	// The same batches as plain forwards, and through the layers only
	// (stopped before the final norm and unembedding, as the harvest stops
	// after its last layer): what the harvest's own work costs beside the
	// forward it needs.
	forwards := func(opts ...modelctx.ForwardOption) func() error {
		return func() error {
			for i := 0; i < len(ex); i += B {
				if _, err := m.Forward(c.Context, ex[i:min(i+B, len(ex))], opts...); err != nil {
					return err
				}
			}
			return nil
		}
	}
	forward, torso := forwards(), forwards(modelctx.StopAtLayer(m.NLayers()))
	col, err := harvest.NewCollector(m, []string{"mlp.post_act"}, 20, 20, B, 0, c.Int("threads"))
	if err != nil {
		return err
	}
	var size int64
	collect := func() error {
		n, err := col.Collect(c.Context, ex)
		size = n
		return err
	}
	stop := benchStopOf(c)
	stop.minTime, stop.maxTime = 0, 0 // --min-runs rounds
	if !c.IsSet("min-runs") {
		// The plain forward's 400 MiB of logits per batch take a few rounds
		// to reach a steady state of the Go heap: fewer rounds under-rate it.
		stop.minRuns = 6
	}
	b, err := interleaved(stop, []func() error{forward, torso, collect})
	if err != nil {
		return err
	}
	tok := float64(len(ex) * T)
	fwd, tr, hv := tok/b.medianTime(0).Seconds(), tok/b.medianTime(1).Seconds(), tok/b.medianTime(2).Seconds()
	fmt.Fprintf(w, "single process, mlp.post_act at all %d layers, top 20 / random 20 (medians of %d rounds):\n", m.NLayers(), len(b.times))
	fmt.Fprintf(w, "  plain forward          %8.1f tokens/s\n", fwd)
	fmt.Fprintf(w, "  forward without logits %8.1f tokens/s   ratio %.3f\n", tr, tr/fwd)
	fmt.Fprintf(w, "  harvest                %8.1f tokens/s   ratio %.3f   (%.3f of the forward without logits; partial state %.1f MiB)\n",
		hv, hv/fwd, hv/tr, float64(size)/(1<<20))
	m.Close()
	if c.Int("worker-shards") <= 0 {
		return nil
	}
	return benchWorkers(c, dir, T, B)
}

// benchWorkers times the queued pass of one harvest computed by 1 and by 2
// worker processes of one thread each (models opened before the clock starts).
func benchWorkers(c *cli.Context, dir string, T, B int) error {
	tmp, err := os.MkdirTemp("", "onnx-tdb-bench-harvest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	mm, err := modelctx.Open(dir)
	if err != nil {
		return err
	}
	nVocab := mm.Manifest().Config.NVocab
	mm.Close()
	shard := B * max(1, c.Int("worker-shard-batches"))
	n := shard * c.Int("worker-shards")
	ex := benchExamples(n, T, nVocab)
	flat := make([]float32, 0, n*T)
	for _, r := range ex {
		for _, id := range r {
			flat = append(flat, float32(id))
		}
	}
	corpusFile := filepath.Join(tmp, "examples.npy")
	if err := npy.Write(corpusFile, []int{n, T}, flat); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	times := map[int]time.Duration{}
	for _, k := range []int{1, 2} {
		var tm harvest.Timing
		var procs []*exec.Cmd
		var mu sync.Mutex
		o := harvest.Options{
			Model: dir, Corpus: []string{corpusFile}, At: []string{c.String("workers-at")},
			Context: T, Top: 20, Random: 20, Batch: B, ShardSize: shard, Seed: uint64(k),
			Out: filepath.Join(tmp, fmt.Sprintf("out%d", k)), Workers: 0, Timing: &tm,
			Open: func(_ context.Context, ref string) (*modelctx.Transformer, error) { return modelctx.Open(ref) },
			// The workers start, open the model and say they are ready
			// before the pass's clock starts: it times shards only.
			OnServer: func(url string) {
				mu.Lock()
				defer mu.Unlock()
				ready := make(chan error, k)
				for i := 0; i < k; i++ {
					cmd := exec.Command(exe, "--threads", "1", "--no-spin", "harvest", "worker", "--nats", url, "--model", dir)
					errs, err := cmd.StderrPipe()
					if err == nil {
						err = cmd.Start()
					}
					if err != nil {
						ready <- err
						continue
					}
					procs = append(procs, cmd)
					go func() {
						sc := bufio.NewScanner(errs)
						said := false
						for sc.Scan() {
							if !said && strings.HasPrefix(sc.Text(), harvest.ReadyLine) {
								said = true
								ready <- nil
							}
						}
						if !said {
							ready <- errors.New("a worker process ended before it was ready")
						}
					}()
				}
				for i := 0; i < k; i++ {
					select {
					case err := <-ready:
						if err != nil {
							fmt.Fprintln(c.App.ErrWriter, "bench harvest:", err)
						}
					case <-time.After(5 * time.Minute):
						fmt.Fprintln(c.App.ErrWriter, "bench harvest: a worker process is not ready after 5 minutes; timing anyway")
						return
					}
				}
			},
		}
		err := harvest.Run(c.Context, o)
		mu.Lock()
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
		mu.Unlock()
		if err != nil {
			return err
		}
		times[k] = tm.Passes[0]
		fmt.Fprintf(c.App.Writer, "  %d worker process(es) × 1 thread: pass %.1fs (%.1f tokens/s; the workers had their model open), merge %.1fs, write %.1fs\n",
			k, tm.Passes[0].Seconds(), float64(n*T)/tm.Passes[0].Seconds(), tm.Merge.Seconds(), tm.Write.Seconds())
	}
	fmt.Fprintf(c.App.Writer, "  2 workers / 1 worker: %.2f×\n", times[1].Seconds()/times[2].Seconds())
	return nil
}
