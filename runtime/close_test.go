package runtime_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// TestCloseWhileRunning closes a model while many forwards and backwards run
// on it: some building plans, some creating sessions, some in warm runs.
// Close waits for them; each either finishes or fails with ErrClosed, and
// runs after Close fail with ErrClosed. (Before, this killed the process
// with a SIGSEGV on an ONNX Runtime thread.)
func TestCloseWhileRunning(t *testing.T) {
	for round := 0; round < 3; round++ {
		m, err := modelctx.Open(goldenDir(t))
		if err != nil {
			t.Fatal(err)
		}
		// A hook that pauses between segments, so Close comes while runs
		// are half done.
		pause := func(*hooks.Context, *hooks.Tensor) error { time.Sleep(2 * time.Millisecond); return nil }
		warm := hooks.New()
		warm.Observe(hooks.PostAttn, pause, hooks.AtLayers(0))
		if _, err := m.Forward(context.Background(), [][]int{{5, 6, 7, 8}}, modelctx.WithHooks(warm)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var ok, closed, inFlight atomic.Int64
		errs := make(chan error, 64)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 200; i++ {
					h := warm
					if g%4 == 1 {
						// Other read sets: plans are built while Close runs.
						h = hooks.New()
						h.Observe(hooks.PostMLP, pause, hooks.AtLayers((g+i)%2))
					}
					inFlight.Add(1)
					var err error
					if g%4 == 3 {
						_, err = m.Backward(context.Background(), [][]int{{5, 6, 7}}, modelctx.LogitLoss(0, 2, 11), modelctx.WithHooks(warm))
					} else {
						_, err = m.Forward(context.Background(), [][]int{{5, 6, 7, 8}}, modelctx.WithHooks(h))
					}
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, runtime.ErrClosed):
						closed.Add(1)
						return
					default:
						errs <- err
						return
					}
				}
			}(g)
		}
		for inFlight.Load() < int64(8+round*8) {
			time.Sleep(time.Millisecond)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: a run failed with something other than ErrClosed: %v", round, err)
		}
		if _, err := m.Forward(context.Background(), [][]int{{5}}); !errors.Is(err, runtime.ErrClosed) {
			t.Errorf("forward after close: %v, want ErrClosed", err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
		t.Logf("round %d: %d runs finished, %d refused", round, ok.Load(), closed.Load())
	}
}

// TestCancelFromObserver: a read-only hook that cancels the run's context
// makes the run fail with the context's error, even where no session runs
// after it.
func TestCancelFromObserver(t *testing.T) {
	m, err := modelctx.Open(goldenDir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, p := range []hooks.Point{hooks.PostAttn, hooks.Logits} {
		ctx, cancel := context.WithCancel(context.Background())
		h := hooks.New()
		var at []hooks.Option
		if p != hooks.Logits {
			at = append(at, hooks.AtLayers(1))
		}
		h.Observe(p, func(*hooks.Context, *hooks.Tensor) error { cancel(); return nil }, at...)
		_, err := m.Forward(ctx, [][]int{{5, 6, 7}}, modelctx.WithHooks(h))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancel from an observer at %s: %v, want context.Canceled", p, err)
		}
		cancel()
	}
}

// TestHookGoexitLeavesNoWatcher: a hook that ends its goroutine with
// runtime.Goexit (as t.FailNow does) must not leave the run's cancellation
// watcher behind.
func TestHookGoexitLeavesNoWatcher(t *testing.T) {
	m, err := modelctx.Open(goldenDir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	warm := func() {
		if _, err := m.Forward(ctx, [][]int{{5, 6}}); err != nil {
			t.Fatal(err)
		}
	}
	warm()
	before := goroutines()
	for i := 0; i < 5; i++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			h := hooks.New()
			h.Observe(hooks.PostAttn, func(*hooks.Context, *hooks.Tensor) error { goexit(); return nil }, hooks.AtLayers(0))
			m.Forward(ctx, [][]int{{5, 6}}, modelctx.WithHooks(h))
		}()
		<-done
	}
	// The exited goroutines unwind; give the scheduler a moment.
	deadline := time.Now().Add(2 * time.Second)
	for goroutines() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := goroutines(); n > before {
		t.Fatalf("%d goroutines after 5 runs ended by Goexit, %d before: watchers leaked", n, before)
	}
}
