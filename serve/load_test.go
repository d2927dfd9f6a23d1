package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

func TestConcurrentLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("200 requests")
	}
	_, ts, _ := start(t, WithLimits(Limits{MaxConcurrent: 2}))
	rows := [][]int{{464, 2068, 7586, 21831, 18045, 625}}
	body := map[string]any{"tokens": rows, "points": []string{"mlp.post_act@1"}, "ablate": []string{"mlp.post_act@0:3"}}
	var want forwardAnswer
	postOK(t, ts.URL+"/v1/forward", body, &want)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const clients, perClient = 16, 13 // 208 requests
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			js, _ := json.Marshal(body)
			for i := 0; i < perClient; i++ {
				resp, err := http.Post(ts.URL+"/v1/forward", "application/json", bytes.NewReader(js))
				if err != nil {
					errs <- err
					return
				}
				var got forwardAnswer
				err = json.NewDecoder(resp.Body).Decode(&got)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d: %v", resp.StatusCode, err)
					return
				}
				a, b := got.Activations["mlp.post_act@1"].Data, want.Activations["mlp.post_act@1"].Data
				for j := range b {
					if a[j] != b[j] {
						errs <- fmt.Errorf("answer differs from the first at %d", j)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 64<<20 {
		t.Fatalf("the Go heap grew by %d MiB over 208 requests", grown>>20)
	}
}

// blocker is a record loader that holds its run slot until released or
// until its request's context ends.
type blocker struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	cause   error
}

func newBlocker() *blocker {
	return &blocker{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (b *blocker) load(ctx context.Context, layer, unit int) (json.RawMessage, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
		return json.RawMessage(`{"neuron_id": {"layer_index": 0, "neuron_index": 0}}`), nil
	case <-ctx.Done():
		b.mu.Lock()
		b.cause = ctx.Err()
		b.mu.Unlock()
		return nil, ctx.Err()
	}
}

func getStatus(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestQueueTimeoutAndFullQueue(t *testing.T) {
	b := newBlocker()
	_, ts, _ := start(t, WithRecords("slow", b.load), WithLimits(Limits{MaxConcurrent: 1, MaxQueue: 1, QueueTimeout: 300 * time.Millisecond}))
	done := make(chan int)
	go func() { code, _ := getStatus(ts.URL + "/v1/records/slow/0/0"); done <- code }()
	<-b.entered // the one slot is taken
	queued := make(chan string)
	go func() { code, body := getStatus(ts.URL + "/v1/forward"); queued <- fmt.Sprint(code, body) }()
	// The forward above is a GET: a 404 at once, not queued. Queue a real one.
	<-queued
	go func() {
		code, out := post(t, ts.URL+"/v1/forward", map[string]any{"tokens": [][]int{{1}}})
		queued <- fmt.Sprint(code, " ", string(out))
	}()
	time.Sleep(50 * time.Millisecond)
	code, out := post(t, ts.URL+"/v1/forward", map[string]any{"tokens": [][]int{{1}}})
	if code != 503 || !strings.Contains(string(out), "limit max_queue") {
		t.Fatalf("over the queue: %d %s", code, out)
	}
	if got := <-queued; !strings.HasPrefix(got, "503") || !strings.Contains(got, "limit queue_timeout") {
		t.Fatalf("queued past the timeout: %s", got)
	}
	close(b.release)
	if code := <-done; code != 200 {
		t.Fatalf("the slow request: %d", code)
	}
}

func TestClientDisconnectCancelsTheRun(t *testing.T) {
	b := newBlocker()
	s, ts, logs := start(t, WithRecords("slow", b.load))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/records/slow/0/0", nil)
	go func() {
		<-b.entered
		cancel()
	}()
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	waitUntil(t, "the run to be cancelled", func() bool { return s.Cancelled() == 1 })
	b.mu.Lock()
	cause := b.cause
	b.mu.Unlock()
	if !errors.Is(cause, context.Canceled) {
		t.Fatalf("the loader saw %v, want context.Canceled", cause)
	}
	waitUntil(t, "the access log line", func() bool { return strings.Contains(logs.String(), "GET /v1/records/slow/0/0 499") })
}

func TestClientDisconnectCancelsAForwardPass(t *testing.T) {
	s, ts, _ := start(t)
	entered := make(chan struct{}, 1)
	s.testHooks = func(ctx context.Context) *hooks.Hooks {
		h := hooks.New()
		// A writing hook cuts the pass here, so layer 1 runs after it.
		h.Add(hooks.MLP.PostAct, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
			entered <- struct{}{}
			<-ctx.Done() // hold the pass until the client is gone
			return x, nil
		}, hooks.AtLayers(0))
		return h
	}
	ctx, cancel := context.WithCancel(context.Background())
	js, _ := json.Marshal(map[string]any{"tokens": [][]int{{1, 2, 3}}})
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/forward", bytes.NewReader(js))
	go func() {
		<-entered
		cancel()
	}()
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	waitUntil(t, "the forward pass to be cancelled", func() bool { return s.Cancelled() == 1 })
}

func TestDrainWaitsForInFlightRequests(t *testing.T) {
	b := newBlocker()
	s, ts, _ := start(t, WithRecords("slow", b.load))
	done := make(chan int)
	go func() { code, _ := getStatus(ts.URL + "/v1/records/slow/0/0"); done <- code }()
	<-b.entered
	drained := make(chan error)
	go func() { drained <- s.Drain(context.Background()) }()
	waitUntil(t, "draining", s.closing.Load)
	if code, out := post(t, ts.URL+"/v1/forward", map[string]any{"tokens": [][]int{{1}}}); code != 503 || !strings.Contains(string(out), "shutting down") {
		t.Fatalf("a new request while draining: %d %s", code, out)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(b.release)
	if code := <-done; code != 200 {
		t.Fatalf("the in-flight request: %d, want 200", code)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
