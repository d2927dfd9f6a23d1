package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// maxRecordBytes bounds one record file read by DirRecords.
const maxRecordBytes = 64 << 20

// DirRecords loads records stored one file per unit, as TDB's collated
// activations are: <base>/<layer>/<unit>.json, where base is a local folder
// or an http(s) URL.
func DirRecords(base string) RecordLoader {
	if strings.HasPrefix(base, "http://") || strings.HasPrefix(base, "https://") {
		base = strings.TrimSuffix(base, "/")
		return func(ctx context.Context, layer, unit int) (json.RawMessage, error) {
			return fetchRecord(ctx, fmt.Sprintf("%s/%d/%d.json", base, layer, unit))
		}
	}
	return func(ctx context.Context, layer, unit int) (json.RawMessage, error) {
		p := filepath.Join(base, fmt.Sprint(layer), fmt.Sprintf("%d.json", unit))
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: no record %s", ErrNotFound, p)
		}
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readRecord(f, p)
	}
}

func fetchRecord(ctx context.Context, url string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: no record at %s", ErrNotFound, url)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	return readRecord(resp.Body, url)
}

func readRecord(r io.Reader, name string) (json.RawMessage, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxRecordBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > maxRecordBytes {
		return nil, fmt.Errorf("%s: over %d bytes", name, maxRecordBytes)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s: not JSON", name)
	}
	return b, nil
}
