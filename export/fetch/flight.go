package fetch

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
)

// A flight is one download in progress, shared by every caller in this process that wants the
// same cache file. It runs under its own context, cancelled only when the last caller waiting
// on it gives up, so one caller's cancel does not fail the others.
type flight struct {
	url      string
	done     chan struct{}
	err      error        // set before done is closed
	size     atomic.Int64 // Content-Length once known, else -1
	received atomic.Int64 // bytes written so far

	cancel  context.CancelFunc
	waiters int // guarded by flights.mu
}

// flights maps a cache path to its download in progress, across every Cache in the process.
var flights = struct {
	mu sync.Mutex
	m  map[string]*flight
}{m: make(map[string]*flight)}

// fetchInto downloads loc to dst unless a download of dst is already running, then waits for it.
func (c *Cache) fetchInto(ctx context.Context, loc Location, dst string, t *tracker) error {
	f := c.join(ctx, loc, dst)
	t.begin(f)
	err := f.wait(ctx, dst)
	t.end(f, dst, err)
	return err
}

// join returns the flight for dst, starting it if there is none, and counts the caller as a waiter.
func (c *Cache) join(ctx context.Context, loc Location, dst string) *flight {
	flights.mu.Lock()
	defer flights.mu.Unlock()
	f := flights.m[dst]
	if f == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{url: c.BlobURL(loc), done: make(chan struct{}), cancel: cancel}
		f.size.Store(-1)
		flights.m[dst] = f
		go func() {
			f.err = c.download(fctx, loc, dst, f)
			cancel()
			flights.mu.Lock()
			if flights.m[dst] == f {
				delete(flights.m, dst)
			}
			flights.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	return f
}

// wait blocks until the flight ends or ctx is done. The last waiter to leave cancels the
// download and waits for it to clean up, so no temporary file outlives the call.
func (f *flight) wait(ctx context.Context, dst string) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
	}
	flights.mu.Lock()
	f.waiters--
	last := f.waiters == 0
	if last {
		f.cancel()
		if flights.m[dst] == f {
			delete(flights.m, dst) // a later caller starts afresh
		}
	}
	flights.mu.Unlock()
	if last {
		<-f.done
	}
	return classify(ctx, f.url, context.Cause(ctx))
}

// tracker adds up what a Fetch or FetchAll has done, for the progress bar.
type tracker struct {
	mu        sync.Mutex
	files     int   // files to download
	filesDone int   // finished, with or without error
	total     int64 // bytes to download, summed from sizes asked for first; 0 when not asked
	sized     bool  // total was set from asked sizes
	doneBytes int64 // bytes of the finished files
	active    map[*flight]bool
}

func (t *tracker) addTotal(n int64) {
	t.mu.Lock()
	t.total += n
	t.sized = true
	t.mu.Unlock()
}

func (t *tracker) begin(f *flight) {
	t.mu.Lock()
	if t.active == nil {
		t.active = make(map[*flight]bool)
	}
	t.active[f] = true
	t.mu.Unlock()
}

func (t *tracker) end(f *flight, dst string, err error) {
	var n int64
	if err == nil {
		if fi, serr := os.Stat(dst); serr == nil {
			n = fi.Size()
		}
	}
	t.mu.Lock()
	delete(t.active, f)
	t.filesDone++
	t.doneBytes += n
	t.mu.Unlock()
}

// progress is one reading of a tracker.
type progress struct {
	done, total      int64 // total 0: unknown
	filesDone, files int
}

func (t *tracker) snapshot() progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := progress{done: t.doneBytes, total: t.total, filesDone: t.filesDone, files: t.files}
	known := true
	for f := range t.active {
		p.done += f.received.Load()
		if s := f.size.Load(); s >= 0 {
			if !t.sized {
				p.total += s
			}
		} else {
			known = false
		}
	}
	if !t.sized {
		p.total += t.doneBytes
		if !known || t.filesDone+len(t.active) < t.files {
			p.total = 0
		}
	}
	return p
}
