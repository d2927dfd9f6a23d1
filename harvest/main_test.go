package harvest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// Environment of a worker process: the test binary re-executed as a worker.
const (
	workerEnv = "ONNX_TDB_HARVEST_TEST_WORKER" // NATS URL
	modelEnv  = "ONNX_TDB_HARVEST_TEST_MODEL"  // exported model folder
	delayEnv  = "ONNX_TDB_HARVEST_TEST_DELAY"  // sleep after each batch, in milliseconds
)

func TestMain(m *testing.M) {
	if url := os.Getenv(workerEnv); url != "" {
		os.Exit(workerMain(url))
	}
	code := m.Run()
	goldenmodel.Cleanup()
	os.Exit(code)
}

// openExported opens an exported model folder (what the tests' jobs name).
func openExported(_ context.Context, ref string) (*modelctx.Transformer, error) {
	return modelctx.Open(ref)
}

// workerMain runs a harvest worker until killed or interrupted, printing
// "shard pN/NNNNNN start|done" lines on stdout.
func workerMain(url string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	delay, _ := strconv.Atoi(os.Getenv(delayEnv))
	err := Work(ctx, WorkerOptions{
		NATS: url, Model: os.Getenv(modelEnv), Open: openExported, Log: os.Stdout,
		AfterBatch: func() { time.Sleep(time.Duration(delay) * time.Millisecond) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		if errors.Is(err, ErrModelMismatch) {
			return 3
		}
		return 1
	}
	return 0
}
