package export

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
)

// ErrUnknownModel is returned for a name that is neither a folder, a URL nor
// a registered model.
var ErrUnknownModel = errors.New("unknown model")

// ResolveOptions control Resolve.
type ResolveOptions struct {
	Fetch fetch.Options // cache root, blob endpoint, progress
	Whole bool          // also write the one-graph copy when exporting
}

// Resolve turns a model reference into an exported directory, exporting it
// into the cache once when needed. A reference is an exported directory, a
// TDB checkpoint folder, a registered name (gpt2-small, ...), an https blob
// URL or an az:// location of a checkpoint folder.
func Resolve(ctx context.Context, ref string, o ResolveOptions) (string, error) {
	if st, err := os.Stat(ref); err == nil && st.IsDir() {
		if IsExported(ref) {
			return ref, nil
		}
		return exportLocal(ctx, ref, o)
	}
	return exportRemote(ctx, ref, o)
}

// exportLocal exports a local checkpoint into the cache, keyed by its path
// and the size and time of each file, so a changed checkpoint is exported again.
func exportLocal(ctx context.Context, dir string, o ResolveOptions) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintln(h, abs)
	filepath.Walk(abs, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			fmt.Fprintln(h, p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	c, err := fetch.New(o.Fetch)
	if err != nil {
		return "", err
	}
	out := filepath.Join(c.Dir(), "exported", "local", filepath.Base(abs)+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	fresh, stale := cachedExport(out)
	if fresh {
		return out, nil
	}
	src, err := OpenSource(abs)
	if err != nil {
		return "", err
	}
	return exportToCache(ctx, src, out, WriteOptions{Name: filepath.Base(abs), Whole: o.Whole, Overwrite: stale})
}

// remoteURL maps a registered name or URL to the checkpoint folder's URL.
func remoteURL(ref string) (string, error) {
	url := ref
	if u, ok := modelURL(ref); ok {
		url = u
	}
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "az://") && !strings.HasPrefix(url, "http://") {
		return "", fmt.Errorf("%w: %q is not a folder, a URL or one of %s", ErrUnknownModel, ref, strings.Join(ModelNames(), ", "))
	}
	return strings.TrimRight(url, "/"), nil
}

// FetchCheckpoint downloads a remote checkpoint folder (a registered name,
// an https blob URL or an az:// location) into the blob cache, through the
// first architecture that can fetch it, and returns the local folder.
func FetchCheckpoint(ctx context.Context, ref string, o fetch.Options) (string, error) {
	url, err := remoteURL(ref)
	if err != nil {
		return "", err
	}
	loc, err := fetch.Parse(url)
	if err != nil {
		return "", err
	}
	c, err := fetch.New(o)
	if err != nil {
		return "", err
	}
	return fetchCheckpoint(ctx, c, loc)
}

func fetchCheckpoint(ctx context.Context, c *fetch.Cache, loc fetch.Location) (string, error) {
	var errs []error
	for _, name := range Architectures() {
		a, _ := Lookup(name)
		f, ok := a.(Fetcher)
		if !ok {
			continue
		}
		dir, err := f.Fetch(ctx, c, loc)
		if err == nil {
			return dir, nil
		}
		if ctx.Err() != nil {
			return "", err
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return "", fmt.Errorf("%w: no registered architecture downloads checkpoints (%s)", ErrUnknownModel, loc.URL())
	}
	return "", errors.Join(errs...)
}

// exportRemote fetches a remote checkpoint into the blob cache, then exports it.
func exportRemote(ctx context.Context, ref string, o ResolveOptions) (string, error) {
	url, err := remoteURL(ref)
	if err != nil {
		return "", err
	}
	loc, err := fetch.Parse(url)
	if err != nil {
		return "", err
	}
	c, err := fetch.New(o.Fetch)
	if err != nil {
		return "", err
	}
	out := filepath.Join(c.Dir(), "exported", loc.Account, loc.Container, filepath.FromSlash(loc.Path))
	fresh, stale := cachedExport(out)
	if fresh {
		return out, nil
	}
	dir, err := fetchCheckpoint(ctx, c, loc)
	if err != nil {
		return "", err
	}
	src, err := OpenSource(dir)
	if err != nil {
		return "", err
	}
	name := loc.Path[strings.LastIndex(loc.Path, "/")+1:]
	return exportToCache(ctx, src, out, WriteOptions{Name: name, Whole: o.Whole, Overwrite: stale})
}

// Versioned is implemented by architectures that version their stage
// graphs: a cached export with an older GraphsVersion is made again.
type Versioned interface {
	GraphsVersion() int
}

// cachedExport says whether out holds a usable export (fresh), or one made
// by an earlier version whose graphs are out of date (stale: export again).
func cachedExport(out string) (fresh, stale bool) {
	if !IsExported(out) {
		return false, false
	}
	m, err := ReadManifest(out)
	if err != nil {
		return false, true
	}
	if a, err := Lookup(m.Architecture); err == nil {
		if v, ok := a.(Versioned); ok && m.GraphsVersion < v.GraphsVersion() {
			return false, true
		}
	}
	return true, false
}

// exportToCache exports a checkpoint into the cache folder out.
func exportToCache(ctx context.Context, src Source, out string, o WriteOptions) (string, error) {
	if _, err := Write(ctx, src, out, o); err != nil {
		if fresh, _ := cachedExport(out); errors.Is(err, ErrExists) && fresh {
			return out, nil // another process won the race
		}
		return "", err
	}
	return out, nil
}
