package fetch

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
)

const (
	partInfix   = atomicdir.PartInfix // <final>.part-<random>: a download in progress
	readRetries = 3                   // re-requests (from the offset reached) when a transfer breaks
)

// download writes loc to dst atomically: into <dst>.part-<random> in the same folder, checked
// against Content-Length and Content-MD5, synced, then renamed. On any error, the temporary file
// is removed and dst is left as it was.
func (c *Cache) download(ctx context.Context, loc Location, dst string, f *flight) (err error) {
	u := f.url
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &fetchError{url: u, msg: "create cache folder: " + err.Error(), cause: err}
	}
	removeStaleParts(dst)
	tmp, err := os.CreateTemp(dir, filepath.Base(dst)+partInfix+"*")
	if err != nil {
		return &fetchError{url: u, msg: "create cache file: " + err.Error(), cause: err}
	}
	// The lock says this download is alive; once the process is gone, the
	// next run in this cache removes the file.
	if err := atomicdir.LockFile(tmp); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return &fetchError{url: u, msg: "lock cache file: " + err.Error(), cause: err}
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	wctx, dog := watch(ctx, c.stallTimeout)
	defer dog.stop()
	fail := func(err error) error {
		if s := dog.stalled(); s != nil && ctx.Err() == nil {
			return unreachable(u, s)
		}
		return classify(ctx, u, err)
	}

	cl, err := c.client(loc)
	if err != nil {
		return &fetchError{url: u, msg: err.Error(), cause: err}
	}
	resp, err := cl.DownloadStream(wctx, nil)
	if err != nil {
		return fail(err)
	}
	dog.kick()
	want := int64(-1)
	if resp.ContentLength != nil {
		want = *resp.ContentLength
		f.size.Store(want)
	}
	body := resp.NewRetryReader(wctx, &blob.RetryReaderOptions{MaxRetries: readRetries})
	defer body.Close()

	sum := md5.New()
	n, err := io.Copy(io.MultiWriter(tmp, sum), &countingReader{r: body, n: &f.received, dog: dog})
	if err != nil {
		return fail(err)
	}
	if want >= 0 && n != want {
		return &fetchError{url: u, kind: ErrCorrupt,
			msg: fmt.Sprintf("%v: got %d bytes, Content-Length says %d", ErrCorrupt, n, want)}
	}
	if md5Want := resp.ContentMD5; len(md5Want) == md5.Size {
		if got := sum.Sum(nil); !bytes.Equal(got, md5Want) {
			return &fetchError{url: u, kind: ErrCorrupt,
				msg: fmt.Sprintf("%v: MD5 %s, Content-MD5 says %s", ErrCorrupt, hex.EncodeToString(got), hex.EncodeToString(md5Want))}
		}
	}
	if err := tmp.Sync(); err != nil {
		return &fetchError{url: u, msg: "sync cache file: " + err.Error(), cause: err}
	}
	if err := tmp.Close(); err != nil {
		return &fetchError{url: u, msg: "close cache file: " + err.Error(), cause: err}
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return &fetchError{url: u, msg: "move into cache: " + err.Error(), cause: err}
	}
	syncDir(dir)
	return nil
}

// countingReader adds what it reads to n and tells the watchdog the transfer is alive.
type countingReader struct {
	r   io.Reader
	n   *atomic.Int64
	dog *watchdog
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.n.Add(int64(n))
		r.dog.kick()
	}
	return n, err
}

// removeStaleParts deletes the .part-* files in dst's folder whose download is gone (left by
// a process that was killed mid-download): no process holds their lock. Best effort.
func removeStaleParts(dst string) {
	dir := filepath.Dir(dst)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.Contains(e.Name(), partInfix) {
			continue
		}
		if p := filepath.Join(dir, e.Name()); atomicdir.Leftover(p) {
			os.Remove(p)
		}
	}
}

// syncDir makes a rename in dir durable. Best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// stallError says a transfer made no progress for too long.
type stallError struct{ d time.Duration }

func (e *stallError) Error() string { return fmt.Sprintf("no data for %s", e.d) }

// watchdog cancels its context when kick has not been called for a while.
type watchdog struct {
	last   atomic.Int64 // unix nanoseconds of the last kick
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
}

func watch(parent context.Context, d time.Duration) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(parent)
	w := &watchdog{ctx: ctx, cancel: cancel, done: make(chan struct{})}
	w.kick()
	go func() {
		tick := time.NewTicker(max(d/4, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if time.Since(time.Unix(0, w.last.Load())) > d {
					cancel(&stallError{d: d})
					return
				}
			}
		}
	}()
	return ctx, w
}

func (w *watchdog) kick() { w.last.Store(time.Now().UnixNano()) }

func (w *watchdog) stop() {
	close(w.done)
	w.cancel(nil)
}

// stalled returns the stall that cancelled the context, if that is what happened.
func (w *watchdog) stalled() *stallError {
	s, _ := context.Cause(w.ctx).(*stallError)
	return s
}
