package sae

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
)

// SAELensScheme starts a reference to an SAE of a known SAELens release:
// saelens:RELEASE/ID.
const SAELensScheme = "saelens:"

// DefaultHubEndpoint is the Hugging Face Hub; $HF_ENDPOINT overrides it, as
// the hub's own clients do, and $HF_TOKEN is sent as a bearer token.
const DefaultHubEndpoint = "https://huggingface.co"

// ErrHub is returned when the Hub refuses or fails a download.
var ErrHub = errors.New("hugging face hub download failed")

func hubEndpoint() string {
	if e := strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/"); e != "" {
		return e
	}
	return DefaultHubEndpoint
}

// openRelease resolves saelens:RELEASE/ID through the release table,
// downloads the SAE's folder into the cache once, and opens it with the
// release's overrides.
func openRelease(ctx context.Context, ref string, o options) (*Autoencoder, error) {
	release, id, ok := strings.Cut(strings.TrimPrefix(ref, SAELensScheme), "/")
	if !ok || release == "" || id == "" {
		return nil, fmt.Errorf("load sae %s: %w: want saelens:RELEASE/ID", ref, ErrUnknownRelease)
	}
	r, s, err := LookupRelease(release, id)
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", ref, err)
	}
	root, err := o.root()
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", ref, err)
	}
	dir := filepath.Join(root, "sae", "hf", filepath.FromSlash(r.Repo), filepath.FromSlash(s.Path))
	if !IsSAELensFolder(dir) {
		unlock := lockFolder(dir)
		err := downloadFolder(ctx, r.Repo, s.Path, dir, o.fetch)
		unlock()
		if err != nil {
			return nil, fmt.Errorf("load sae %s: %w", ref, err)
		}
	}
	o.over = Overrides{NormScalingFactor: s.NormScalingFactor, Processing: r.Processing}
	ae, err := openSAELens(dir, o)
	if err != nil {
		return nil, err
	}
	ae.Source = ref
	return ae, nil
}

// downloadFolder fetches a SAELens folder (cfg.json, sae_weights.safetensors,
// and sparsity.safetensors when the repository has it) into dir, atomically:
// the files land in a temporary folder, are checked (the cfg parses, the
// safetensors headers are sound), and the folder is renamed into place.
func downloadFolder(ctx context.Context, repo, path, dir string, fo fetch.Options) error {
	return atomicdir.Write(dir, func(tmp string) error {
		for _, f := range []struct {
			name     string
			optional bool
		}{{saelensCfgName, false}, {saelensWeightsName, false}, {saelensSparsityName, true}} {
			err := hubFile(ctx, repo, path+"/"+f.name, filepath.Join(tmp, f.name), fo)
			if f.optional && errors.Is(err, fetch.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
		}
		b, err := os.ReadFile(filepath.Join(tmp, saelensCfgName))
		if err != nil {
			return err
		}
		if _, err := parseSAELensCfg(b); err != nil {
			return err
		}
		for _, name := range []string{saelensWeightsName, saelensSparsityName} {
			p := filepath.Join(tmp, name)
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				continue
			}
			st, err := safetensors.Open(p)
			if err != nil {
				return fmt.Errorf("%w: %s: %w", ErrBadSAELensFolder, name, err)
			}
			st.Close()
		}
		return nil
	}, func(out string) atomicdir.Exists {
		if IsSAELensFolder(out) {
			return atomicdir.Keep
		}
		return atomicdir.Replace
	})
}

// hubFile downloads <endpoint>/<repo>/resolve/main/<file> to dst.
func hubFile(ctx context.Context, repo, file, dst string, fo fetch.Options) error {
	var parts []string
	for _, p := range strings.Split(file, "/") {
		parts = append(parts, url.PathEscape(p))
	}
	u := hubEndpoint() + "/" + repo + "/resolve/main/" + strings.Join(parts, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHub, err)
	}
	if tok := os.Getenv("HF_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	client := fo.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s: %v (check the network, or set HF_ENDPOINT)", ErrHub, u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", fetch.ErrNotFound, u)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s: %s (set HF_TOKEN for gated or private repositories)", ErrHub, u, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: %s: %s", ErrHub, u, resp.Status)
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	pw := progressWriter(fo, filepath.Base(file), resp.ContentLength)
	n, err := io.Copy(out, io.TeeReader(resp.Body, pw))
	pw.done()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s: %v", ErrHub, u, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("%w: %s: got %d of %d bytes", ErrHub, u, n, resp.ContentLength)
	}
	return nil
}

// hubProgress draws a one-line progress bar, as the blob cache does.
type hubProgress struct {
	w           io.Writer
	label       string
	total, n    int64
	start, last time.Time
	drawn       bool
}

func progressWriter(fo fetch.Options, label string, total int64) *hubProgress {
	w := fo.Progress
	if w == nil {
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			w = os.Stderr
		}
	}
	now := time.Now()
	return &hubProgress{w: w, label: label, total: total, start: now, last: now}
}

func (p *hubProgress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.w != nil && time.Since(p.last) >= 200*time.Millisecond && time.Since(p.start) >= 500*time.Millisecond {
		p.draw()
	}
	return len(b), nil
}

func (p *hubProgress) draw() {
	p.last, p.drawn = time.Now(), true
	line := fmt.Sprintf("\rfetch %s  %.1f MB", p.label, float64(p.n)/1e6)
	if p.total > 0 {
		line += fmt.Sprintf(" / %.1f MB  %3d%%", float64(p.total)/1e6, p.n*100/p.total)
	}
	fmt.Fprint(p.w, line)
}

func (p *hubProgress) done() {
	if p.w != nil && p.drawn {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
