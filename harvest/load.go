package harvest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/harvest/records"
)

// ErrNoRecord: the location holds no record for that layer and unit.
var ErrNoRecord = errors.New("no such neuron record")

// LoadOption configures LoadRecord.
type LoadOption func(*loadOptions)

type loadOptions struct {
	point string
	fetch fetch.Options
}

// WithPoint picks the point folder (a dot path, e.g. mlp.post_act) inside a
// harvest output folder that holds several.
func WithPoint(p string) LoadOption { return func(o *loadOptions) { o.point = p } }

// WithFetch sets the blob cache options for remote locations.
func WithFetch(f fetch.Options) LoadOption { return func(o *loadOptions) { o.fetch = f } }

// LoadRecord reads the NeuronRecord of a unit from a folder or blob
// location in TDB's layout, <location>/collated-activations/<layer>/<unit>.json:
// location is a point folder (ours, or TDB's public datasets such as
// az://openaipublic/neuron-explainer/gpt2-small/autoencoder_latent/resid_delta_mlp_v4),
// or a harvest output folder (with WithPoint when it holds several points).
// Remote records are read through the blob cache.
func LoadRecord(ctx context.Context, location string, layer, unit int, opts ...LoadOption) (*records.NeuronRecord, error) {
	var o loadOptions
	for _, f := range opts {
		f(&o)
	}
	if layer < 0 || unit < 0 {
		return nil, fmt.Errorf("%w: layer %d, unit %d", ErrNoRecord, layer, unit)
	}
	rel := []string{"collated-activations", strconv.Itoa(layer), strconv.Itoa(unit) + ".json"}
	var raw []byte
	var where string
	if isRemote(location) {
		loc, err := fetch.Parse(location)
		if err != nil {
			return nil, err
		}
		if o.point != "" {
			loc = loc.Join(o.point)
		}
		loc = loc.Join(rel...)
		c, err := fetch.New(o.fetch)
		if err != nil {
			return nil, err
		}
		where = loc.URL()
		if raw, err = c.Read(ctx, loc); err != nil {
			if errors.Is(err, fetch.ErrNotFound) {
				return nil, fmt.Errorf("%w: %s: %w", ErrNoRecord, where, err)
			}
			return nil, err
		}
	} else {
		dir, err := pointFolder(location, o.point)
		if err != nil {
			return nil, err
		}
		where = filepath.Join(append([]string{dir}, rel...)...)
		if raw, err = os.ReadFile(where); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w: %s", ErrNoRecord, where)
			}
			return nil, err
		}
	}
	r, err := records.Unmarshal(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return r, nil
}

func isRemote(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "az://") || strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://")
}

// pointFolder finds the folder holding collated-activations/.
func pointFolder(dir, point string) (string, error) {
	if point != "" {
		dir = filepath.Join(dir, point)
	}
	if st, err := os.Stat(filepath.Join(dir, "collated-activations")); err == nil && st.IsDir() {
		return dir, nil
	}
	if point != "" {
		return "", fmt.Errorf("%w: %s has no collated-activations folder", ErrNoRecord, dir)
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("records %s: %w", dir, err)
	}
	var found []string
	for _, e := range es {
		if st, err := os.Stat(filepath.Join(dir, e.Name(), "collated-activations")); err == nil && st.IsDir() {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: %s holds no collated-activations folder", ErrNoRecord, dir)
	case 1:
		return filepath.Join(dir, found[0]), nil
	}
	return "", fmt.Errorf("%w: %s holds several points (%s): choose one", ErrNoRecord, dir, strings.Join(found, ", "))
}
