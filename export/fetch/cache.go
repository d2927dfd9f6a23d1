package fetch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
)

// Environment variables read by New when the matching Options field is empty.
const (
	CacheEnv    = "ONNX_TDB_CACHE"         // cache root
	EndpointEnv = "ONNX_TDB_BLOB_ENDPOINT" // service URL with "{account}", e.g. http://127.0.0.1:10000/{account}
)

// DefaultEndpoint is the public Blob Storage service, "{account}" standing for the account name.
const DefaultEndpoint = "https://{account}" + blobHostSuffix

const (
	defaultParallel = 8
	stallTimeout    = 60 * time.Second       // no byte for this long: the transfer is dead
	progressDelay   = 500 * time.Millisecond // quick fetches draw nothing
)

// Options configure a Cache. The zero value is ready to use.
type Options struct {
	// Dir is the cache root; blobs go under <Dir>/blobs/<account>/<container>/<path>.
	// Default: $ONNX_TDB_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/onnx-tdb.
	Dir string
	// Endpoint is the service URL, with "{account}" standing for the account name, e.g.
	// "http://127.0.0.1:10000/{account}" for Azurite. Default: $ONNX_TDB_BLOB_ENDPOINT, else
	// https://{account}.blob.core.windows.net.
	Endpoint string
	// Progress receives a one-line progress bar redrawn with '\r'. Nil: os.Stderr when it is a
	// terminal, else nothing. io.Discard turns it off.
	Progress io.Writer
	// Parallel is how many downloads FetchAll runs at once (default 8).
	Parallel int
	// HTTPClient, when set, sends every request (tests use it to count or alter them).
	HTTPClient *http.Client
}

// Cache fetches blobs into a local folder. It is safe for concurrent use.
type Cache struct {
	dir        string
	endpoint   string
	progress   io.Writer // nil: silent
	parallel   int
	clientOpts blob.ClientOptions

	stallTimeout  time.Duration
	progressDelay time.Duration
}

// New checks the options and fills in the defaults.
func New(opts Options) (*Cache, error) {
	dir, err := cacheDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = os.Getenv(EndpointEnv)
	}
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	endpoint = strings.TrimRight(endpoint, "/")
	u, err := url.Parse(strings.ReplaceAll(endpoint, "{account}", "account"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("fetch: bad endpoint %q: want an http(s) URL such as %s", endpoint, DefaultEndpoint)
	}
	c := &Cache{
		dir:           dir,
		endpoint:      endpoint,
		progress:      opts.Progress,
		parallel:      opts.Parallel,
		stallTimeout:  stallTimeout,
		progressDelay: progressDelay,
	}
	if c.progress == nil && isTerminal(os.Stderr) {
		c.progress = os.Stderr
	}
	if c.progress == io.Discard {
		c.progress = nil
	}
	if c.parallel <= 0 {
		c.parallel = defaultParallel
	}
	c.clientOpts.Telemetry = policy.TelemetryOptions{ApplicationID: "onnx-tdb"}
	if opts.HTTPClient != nil {
		c.clientOpts.Transport = opts.HTTPClient
	}
	return c, nil
}

// cacheDir resolves the cache root: dir, $ONNX_TDB_CACHE, ${XDG_CACHE_HOME:-~/.cache}/onnx-tdb.
func cacheDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(CacheEnv)
	}
	if dir == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("fetch: no cache folder: set %s or Options.Dir: %w", CacheEnv, err)
			}
			base = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(base, "onnx-tdb")
	}
	return filepath.Abs(dir)
}

// Dir is the cache root.
func (c *Cache) Dir() string { return c.dir }

// Path is where loc is (or would be) cached, or "" when loc does not name a blob.
func (c *Cache) Path(loc Location) string {
	if loc.check(true) != nil {
		return ""
	}
	return filepath.Join(c.dir, "blobs", loc.Account, loc.Container, filepath.FromSlash(loc.Path))
}

// BlobURL is the URL a request for loc goes to: the endpoint with the account filled in.
func (c *Cache) BlobURL(loc Location) string {
	return strings.ReplaceAll(c.endpoint, "{account}", loc.Account) + "/" + loc.Container + "/" + escapePath(loc.Path)
}

// Fetch returns the local path of loc, downloading it first when it is not cached.
// Concurrent fetches of one blob in this process share one download.
func (c *Cache) Fetch(ctx context.Context, loc Location) (string, error) {
	dst, err := c.target(loc)
	if err != nil {
		return "", err
	}
	if cached(dst) {
		return dst, nil
	}
	t := &tracker{files: 1}
	stop := c.drawProgress(t, path.Base(loc.Path))
	err = c.fetchInto(ctx, loc, dst, t)
	stop(err == nil)
	if err != nil {
		return "", err
	}
	return dst, nil
}

// Read returns the bytes of loc, through the cache (for small files such as config.json).
func (c *Cache) Read(ctx context.Context, loc Location) ([]byte, error) {
	p, err := c.Fetch(ctx, loc)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: read cached copy: %w", loc.URL(), err)
	}
	return b, nil
}

// FetchAll fetches locs, Parallel at a time, and returns their local paths in the same order.
// The first error cancels the downloads still running and is returned; files already complete stay
// cached. With progress on, one bar shows bytes and files over all the downloads.
func (c *Cache) FetchAll(ctx context.Context, locs []Location) ([]string, error) {
	paths := make([]string, len(locs))
	var todo []job
	seen := make(map[string]bool)
	for i, loc := range locs {
		dst, err := c.target(loc)
		if err != nil {
			return nil, err
		}
		paths[i] = dst
		if !seen[dst] && !cached(dst) {
			todo = append(todo, job{loc: loc, dst: dst})
		}
		seen[dst] = true
	}
	if len(todo) == 0 {
		return paths, nil
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel(err)
		}
	}
	t := &tracker{files: len(todo)}
	if c.progress != nil {
		// Sizes first, so the bar has a total; this also finds a missing blob before any download.
		c.forEach(ctx, todo, func(j *job) {
			n, err := c.size(ctx, j.loc)
			if err != nil {
				fail(err)
				return
			}
			t.addTotal(n)
		})
		if firstErr != nil {
			return nil, firstErr
		}
	}
	stop := c.drawProgress(t, "")
	c.forEach(ctx, todo, func(j *job) {
		if err := c.fetchInto(ctx, j.loc, j.dst, t); err != nil {
			fail(err)
		}
	})
	stop(firstErr == nil)
	if firstErr != nil {
		return nil, firstErr
	}
	return paths, nil
}

// job is one blob FetchAll has to download.
type job struct {
	loc Location
	dst string
}

// forEach runs fn on each job, c.parallel at a time, and stops starting new ones once ctx is done.
func (c *Cache) forEach(ctx context.Context, jobs []job, fn func(*job)) {
	sem := make(chan struct{}, c.parallel)
	var wg sync.WaitGroup
	for i := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(j *job) {
			defer func() { <-sem; wg.Done() }()
			fn(j)
		}(&jobs[i])
	}
	wg.Wait()
}

// target validates loc and returns its cache path.
func (c *Cache) target(loc Location) (string, error) {
	if err := loc.check(true); err != nil {
		return "", &fetchError{url: loc.URL(), msg: ErrBadLocation.Error() + ": " + err.Error(), kind: ErrBadLocation}
	}
	return c.Path(loc), nil
}

// client is an anonymous client for one blob.
func (c *Cache) client(loc Location) (*blob.Client, error) {
	opts := c.clientOpts
	return blob.NewClientWithNoCredential(c.BlobURL(loc), &opts)
}

// size asks the service for the length of loc.
func (c *Cache) size(ctx context.Context, loc Location) (int64, error) {
	u := c.BlobURL(loc)
	cl, err := c.client(loc)
	if err != nil {
		return 0, &fetchError{url: u, msg: err.Error(), cause: err}
	}
	hctx, cancel := context.WithTimeout(ctx, c.stallTimeout)
	defer cancel()
	props, err := cl.GetProperties(hctx, nil)
	if err != nil {
		return 0, classify(ctx, u, err)
	}
	if props.ContentLength == nil {
		return 0, nil
	}
	return *props.ContentLength, nil
}

func cached(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
