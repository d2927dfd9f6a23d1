package fetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/onnx-tdb/onnx-tdb/export/fetch/fetchtest"
)

const (
	modelDir   = "../../testdata/golden/model" // config.json + model_pieces/*.pt (37 pieces, 26 MB)
	modelBase  = "az://openaipublic/neuron-explainer/subject-models/gpt2/small"
	modelHTTPS = "https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/small"
	bigPiece   = "model_pieces/tok_embed.weight.pt" // 12.9 MB
	saeBlob    = "gpt2-small/resid_delta_mlp_v4/autoencoders/0.pt"
)

// recorder is an http.RoundTripper that counts requests and may alter GET responses.
type recorder struct {
	base  http.RoundTripper
	alter func(req *http.Request, resp *http.Response) // set before the first request

	mu                    sync.Mutex
	gets, heads           int
	inflight, maxInflight int
}

func newRecorder() *recorder {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &recorder{base: tr}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	switch req.Method {
	case http.MethodGet:
		r.gets++
	case http.MethodHead:
		r.heads++
	}
	r.inflight++
	r.maxInflight = max(r.maxInflight, r.inflight)
	r.mu.Unlock()
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		r.done()
		return nil, err
	}
	resp.Body = &closeHook{ReadCloser: resp.Body, onClose: r.done}
	if r.alter != nil && req.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
		r.alter(req, resp)
	}
	return resp, nil
}

func (r *recorder) done() {
	r.mu.Lock()
	r.inflight--
	r.mu.Unlock()
}

func (r *recorder) counts() (gets, heads int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets, r.heads
}

type closeHook struct {
	io.ReadCloser
	once    sync.Once
	onClose func()
}

func (c *closeHook) Close() error {
	c.once.Do(c.onClose)
	return c.ReadCloser.Close()
}

// readHook calls fn before each Read of the body it wraps; fn may change what was read.
type readHook struct {
	io.ReadCloser
	fn func(p []byte, n int, err error) (int, error)
}

func (h *readHook) Read(p []byte) (int, error) {
	n, err := h.ReadCloser.Read(p)
	return h.fn(p, n, err)
}

// newTestCache makes a Cache on a fresh folder that sends through rec, with quick retries.
func newTestCache(t *testing.T, endpoint string, rec *recorder, opts Options) *Cache {
	t.Helper()
	opts.Dir = t.TempDir()
	opts.Endpoint = endpoint
	opts.HTTPClient = &http.Client{Transport: rec}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	c.clientOpts.Retry = policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond}
	c.progressDelay = 0
	return c
}

// modelFiles reads the golden model folder: blob path under the model base -> bytes.
func modelFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	err := filepath.WalkDir(modelDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(modelDir, p)
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// filesUnder lists the regular files under dir (relative paths), to check what a fetch left.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func mustParse(t *testing.T, s string) Location {
	t.Helper()
	loc, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestAzurite(t *testing.T) {
	az := fetchtest.StartAzurite(t)
	files := modelFiles(t)
	uploaded := az.UploadDir("neuron-explainer", "subject-models/gpt2/small", modelDir)
	if len(uploaded) != len(files) || len(files) < 20 {
		t.Fatalf("uploaded %d blobs from %d files", len(uploaded), len(files))
	}
	sae := bytes.Repeat([]byte("sae state dict "), 1000)
	az.Upload("sparse-autoencoder", saeBlob, sae)
	odd := []byte("a blob whose name has a space and non-ASCII letters")
	az.Upload("neuron-explainer", "dir with space/ü 模型.pt", odd)
	base := mustParse(t, modelBase)

	t.Run("FetchThroughAzAndHTTPSThenFromCache", func(t *testing.T) {
		rec := newRecorder()
		c := newTestCache(t, az.Endpoint, rec, Options{})
		for _, s := range []string{modelBase + "/" + bigPiece, modelHTTPS + "/config.json",
			"https://openaipublic.blob.core.windows.net/sparse-autoencoder/" + saeBlob} {
			loc := mustParse(t, s)
			p, err := c.Fetch(t.Context(), loc)
			if err != nil {
				t.Fatalf("Fetch(%s): %v", s, err)
			}
			if p != c.Path(loc) {
				t.Errorf("Fetch(%s) = %s, want %s", s, p, c.Path(loc))
			}
			got, _ := os.ReadFile(p)
			want := files[strings.TrimPrefix(loc.Path, base.Path+"/")]
			if loc.Container == "sparse-autoencoder" {
				want = sae
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Fetch(%s): %d bytes differ from the %d uploaded", s, len(got), len(want))
			}
		}
		gets, _ := rec.counts()
		if gets != 3 {
			t.Errorf("first fetches sent %d GETs, want 3", gets)
		}
		// the same blobs again, in the other form: served from the cache, no request
		for _, s := range []string{modelHTTPS + "/" + bigPiece, modelBase + "/config.json"} {
			if _, err := c.Fetch(t.Context(), mustParse(t, s)); err != nil {
				t.Fatal(err)
			}
		}
		if cfg, err := c.Read(t.Context(), base.Join("config.json")); err != nil || !bytes.Equal(cfg, files["config.json"]) {
			t.Errorf("Read(config.json) = %q, %v", cfg, err)
		}
		if gets2, heads := rec.counts(); gets2 != gets || heads != 0 {
			t.Errorf("cached fetches sent %d GETs and %d HEADs", gets2-gets, heads)
		}
		// nothing but the three blobs in the cache folder: no temporary files
		if got := filesUnder(t, c.Dir()); len(got) != 3 {
			t.Errorf("cache holds %q, want 3 files", got)
		}
	})

	t.Run("PathWithSpaceAndUnicode", func(t *testing.T) {
		c := newTestCache(t, az.Endpoint, newRecorder(), Options{})
		for _, s := range []string{"az://openaipublic/neuron-explainer/dir with space/ü 模型.pt",
			"https://openaipublic.blob.core.windows.net/neuron-explainer/dir%20with%20space/%C3%BC%20%E6%A8%A1%E5%9E%8B.pt"} {
			b, err := c.Read(t.Context(), mustParse(t, s))
			if err != nil || !bytes.Equal(b, odd) {
				t.Errorf("Read(%s) = %q, %v", s, b, err)
			}
		}
	})

	t.Run("MissingBlobIsErrNotFound", func(t *testing.T) {
		c := newTestCache(t, az.Endpoint, newRecorder(), Options{})
		// (a missing container answers 403 to anonymous requests on Azurite, so it is not tried here)
		for _, loc := range []Location{base.Join("model_pieces", "no-such-piece.pt"), {"openaipublic", "sparse-autoencoder", "x.pt"}} {
			_, err := c.Fetch(t.Context(), loc)
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Fetch(%s) = %v, want ErrNotFound", loc, err)
			} else if !strings.Contains(err.Error(), c.BlobURL(loc)) {
				t.Errorf("error %q does not name %s", err, c.BlobURL(loc))
			}
		}
		if got := filesUnder(t, c.Dir()); len(got) != 0 {
			t.Errorf("failed fetches left %q", got)
		}
	})

	t.Run("ConcurrentFetchesShareOneDownload", func(t *testing.T) {
		rec := newRecorder()
		c := newTestCache(t, az.Endpoint, rec, Options{})
		loc := base.Join(bigPiece)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { _, errs[i] = c.Fetch(t.Context(), loc) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if gets, _ := rec.counts(); gets != 1 {
			t.Errorf("8 concurrent fetches sent %d GETs, want 1", gets)
		}
		if got, _ := os.ReadFile(c.Path(loc)); !bytes.Equal(got, files[bigPiece]) {
			t.Error("cached bytes differ")
		}
	})

	t.Run("CancelMidDownloadLeavesNoFile", func(t *testing.T) {
		rec := newRecorder()
		c := newTestCache(t, az.Endpoint, rec, Options{})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var read int
		rec.alter = func(_ *http.Request, resp *http.Response) {
			resp.Body = &readHook{ReadCloser: resp.Body, fn: func(p []byte, n int, err error) (int, error) {
				read += n
				if read > 1<<20 {
					cancel() // a megabyte in: give up
					time.Sleep(10 * time.Millisecond)
				}
				return n, err
			}}
		}
		_, err := c.Fetch(ctx, base.Join(bigPiece))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Fetch = %v, want context.Canceled", err)
		}
		if read <= 1<<20 {
			t.Fatalf("cancelled after %d bytes; the test wants a cancel mid-download", read)
		}
		if got := filesUnder(t, c.Dir()); len(got) != 0 {
			t.Errorf("cancelled fetch left %q", got)
		}
	})

	t.Run("OneCallerCancellingDoesNotFailAnother", func(t *testing.T) {
		rec := newRecorder()
		c := newTestCache(t, az.Endpoint, rec, Options{})
		release := make(chan struct{})
		rec.alter = func(_ *http.Request, resp *http.Response) {
			resp.Body = &readHook{ReadCloser: resp.Body, fn: func(p []byte, n int, err error) (int, error) {
				<-release
				return n, err
			}}
		}
		loc := base.Join(bigPiece)
		ctxA, cancelA := context.WithCancel(t.Context())
		errA, errB := make(chan error, 1), make(chan error, 1)
		go func() { _, err := c.Fetch(ctxA, loc); errA <- err }()
		go func() { _, err := c.Fetch(t.Context(), loc); errB <- err }()
		waitFor(t, func() bool {
			flights.mu.Lock()
			defer flights.mu.Unlock()
			f := flights.m[c.Path(loc)]
			return f != nil && f.waiters == 2
		})
		cancelA()
		if err := <-errA; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled caller got %v", err)
		}
		close(release)
		if err := <-errB; err != nil {
			t.Errorf("other caller got %v", err)
		}
		if gets, _ := rec.counts(); gets != 1 {
			t.Errorf("sent %d GETs, want 1", gets)
		}
	})

	t.Run("FetchAllInParallel", func(t *testing.T) {
		rec := newRecorder()
		rec.alter = func(_ *http.Request, resp *http.Response) {
			time.Sleep(20 * time.Millisecond) // keep requests open long enough to overlap
		}
		var progress bytes.Buffer
		c := newTestCache(t, az.Endpoint, rec, Options{Parallel: 4, Progress: &progress})
		var locs []Location
		for _, p := range uploaded {
			locs = append(locs, mustParse(t, "https://openaipublic.blob.core.windows.net/neuron-explainer/"+p))
		}
		locs = append(locs, locs[0]) // a duplicate is fetched once
		paths, err := c.FetchAll(t.Context(), locs)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range paths {
			if got, _ := os.ReadFile(p); p != c.Path(locs[i]) || !bytes.Equal(got, files[strings.TrimPrefix(locs[i].Path, base.Path+"/")]) {
				t.Errorf("path %d: %s does not hold %s", i, p, locs[i])
			}
		}
		gets, heads := rec.counts()
		n := len(uploaded)
		if gets != n || heads != n {
			t.Errorf("sent %d GETs and %d HEADs for %d blobs", gets, heads, n)
		}
		if rec.maxInflight < 2 || rec.maxInflight > 4 {
			t.Errorf("at most %d requests ran at once, want 2..4", rec.maxInflight)
		}
		out := progress.String()
		last := out[strings.LastIndex(out, "\r")+1:]
		if want := strconv.Itoa(n) + "/" + strconv.Itoa(n) + " files"; !strings.Contains(last, want) || !strings.Contains(last, "100%") ||
			!strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Errorf("progress %q: want one line ending in %q, 100%%", out, want)
		}
		// all cached now: no request, no progress line
		progress.Reset()
		if _, err := c.FetchAll(t.Context(), locs); err != nil {
			t.Fatal(err)
		}
		if gets2, heads2 := rec.counts(); gets2 != gets || heads2 != heads || progress.Len() != 0 {
			t.Errorf("second FetchAll sent %d GETs, %d HEADs and drew %q", gets2-gets, heads2-heads, progress.String())
		}
		if got := filesUnder(t, filepath.Join(c.Dir(), "blobs", "openaipublic", "neuron-explainer", "subject-models", "gpt2", "small")); len(got) != n {
			t.Errorf("cache holds %d files, want %d", len(got), n)
		}
	})

	t.Run("FetchAllStopsAtFirstError", func(t *testing.T) {
		var locs []Location
		for _, p := range uploaded[:10] {
			locs = append(locs, Location{base.Account, base.Container, p})
		}
		locs = append(locs[:5], append([]Location{base.Join("model_pieces/missing.pt")}, locs[5:]...)...)

		rec := newRecorder()
		c := newTestCache(t, az.Endpoint, rec, Options{Parallel: 2})
		if _, err := c.FetchAll(t.Context(), locs); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "missing.pt") {
			t.Errorf("FetchAll = %v, want ErrNotFound naming missing.pt", err)
		}
		// with a progress bar, sizes are asked first: the missing blob fails before any download
		rec = newRecorder()
		c = newTestCache(t, az.Endpoint, rec, Options{Parallel: 2, Progress: new(bytes.Buffer)})
		if _, err := c.FetchAll(t.Context(), locs); !errors.Is(err, ErrNotFound) {
			t.Errorf("FetchAll with progress = %v, want ErrNotFound", err)
		}
		if gets, _ := rec.counts(); gets != 0 {
			t.Errorf("sent %d GETs after a HEAD found a missing blob", gets)
		}
		for _, f := range filesUnder(t, c.Dir()) {
			if strings.Contains(f, partInfix) {
				t.Errorf("left temporary file %s", f)
			}
		}
	})

	t.Run("CorruptBodyIsErrCorrupt", func(t *testing.T) {
		for name, alter := range map[string]func(*http.Request, *http.Response){
			"FlippedByte": func(_ *http.Request, resp *http.Response) {
				first := true
				resp.Body = &readHook{ReadCloser: resp.Body, fn: func(p []byte, n int, err error) (int, error) {
					if first && n > 0 {
						p[0] ^= 0xff
						first = false
					}
					return n, err
				}}
			},
			"ShortBody": func(_ *http.Request, resp *http.Response) {
				resp.Body = struct {
					io.Reader
					io.Closer
				}{io.LimitReader(resp.Body, resp.ContentLength-10), resp.Body}
			},
		} {
			t.Run(name, func(t *testing.T) {
				rec := newRecorder()
				rec.alter = alter
				c := newTestCache(t, az.Endpoint, rec, Options{})
				_, err := c.Fetch(t.Context(), base.Join("config.json"))
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("Fetch = %v, want ErrCorrupt", err)
				}
				if got := filesUnder(t, c.Dir()); len(got) != 0 {
					t.Errorf("corrupt fetch left %q", got)
				}
			})
		}
	})

	t.Run("StalledTransferIsErrUnreachable", func(t *testing.T) {
		rec := newRecorder()
		rec.alter = func(req *http.Request, resp *http.Response) {
			resp.Body = &readHook{ReadCloser: resp.Body, fn: func(p []byte, n int, err error) (int, error) {
				<-req.Context().Done() // the server goes quiet
				return 0, req.Context().Err()
			}}
		}
		c := newTestCache(t, az.Endpoint, rec, Options{})
		c.stallTimeout = 300 * time.Millisecond
		start := time.Now()
		_, err := c.Fetch(t.Context(), base.Join("config.json"))
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no data for 300ms") {
			t.Errorf("Fetch = %v, want ErrUnreachable after no data for 300ms", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stall noticed after %s", d)
		}
		if got := filesUnder(t, c.Dir()); len(got) != 0 {
			t.Errorf("stalled fetch left %q", got)
		}
	})
}

func TestClosedPortIsErrUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port) + "/{account}"
	loc := mustParse(t, modelBase+"/config.json")
	for _, progress := range []io.Writer{nil, new(bytes.Buffer)} { // Fetch's GET, and FetchAll's HEAD
		c := newTestCache(t, endpoint, newRecorder(), Options{Progress: progress})
		_, err := c.Fetch(t.Context(), loc)
		if progress != nil {
			_, err = c.FetchAll(t.Context(), []Location{loc})
		}
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("fetch from a closed port = %v, want ErrUnreachable", err)
		}
		msg := err.Error()
		for _, want := range []string{c.BlobURL(loc), "check the network", EndpointEnv} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		if got := filesUnder(t, c.Dir()); len(got) != 0 {
			t.Errorf("failed fetch left %q", got)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 10s")
}
