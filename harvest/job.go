package harvest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/harvest/collect"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// Errors callers branch on.
var (
	ErrBadSite       = errors.New("bad harvest site")
	ErrOtherJob      = errors.New("output folder holds another job")
	ErrModelMismatch = errors.New("worker's model differs from the job's")
	ErrTooBig        = errors.New("job exceeds the memory budget")
)

// Version is written into every harvest manifest.
const Version = "onnx-tdb-harvest/1"

// DefaultQuantileBudget bounds what the quantile boundaries hold: the
// exact per-example maxima (units × examples × 4 bytes) while they fit,
// else a sketch (collect.SketchBytes); a job needing more is refused with
// ErrTooBig.
const DefaultQuantileBudget = 1 << 30

// SiteSpec is one harvested site of a job.
type SiteSpec struct {
	Point string `json:"point"` // dot path of the records' point: the hook point, or sae.latents
	Layer int    `json:"layer"` // model layer; -1 for once points
	Dir   int    `json:"dir"`   // layer directory of the records (0 for once points)
	Units int    `json:"units"`
	// SAE sites: the autoencoder and the point it reads (at Layer).
	SAE      string `json:"sae,omitempty"`
	SAEInput string `json:"sae_input,omitempty"`
}

func (s SiteSpec) id() collect.SiteID { return collect.SiteID{Point: s.Point, Layer: s.Dir} }

// hookSite is where the site's values (or its SAE's input) are read.
func (s SiteSpec) hookSite() (hooks.Site, error) {
	path := s.Point
	if s.SAE != "" {
		path = s.SAEInput
	}
	p, err := hooks.Parse(path)
	if err != nil {
		return hooks.Site{}, err
	}
	return hooks.Site{Point: p, Layer: s.Layer}, nil
}

// Job is everything a worker needs besides the tokens: the model, where to
// read, and the per-unit rules. Its ID is a hash of all of it and of the
// tokens.
type Job struct {
	ID         string         `json:"id"`
	Version    string         `json:"version"`
	Model      string         `json:"model"`
	ModelHash  string         `json:"model_hash"`
	Sites      []SiteSpec     `json:"sites"`
	Params     collect.Params `json:"params"`
	Batch      int            `json:"batch"`
	Examples   int            `json:"examples"`
	ShardSize  int            `json:"-"` // the coordinator's plan; not part of the job's identity
	TokensHash string         `json:"tokens_sha256"`
}

// Shards is the number of shards of the job.
func (j *Job) Shards() int { return (j.Examples + j.ShardSize - 1) / j.ShardSize }

// ShardRange is the example range of shard i.
func (j *Job) ShardRange(i int) (first int64, count int) {
	first = int64(i) * int64(j.ShardSize)
	return first, min(j.ShardSize, j.Examples-int(first))
}

// checkRange validates a shard's examples: inside the job, starting on a
// batch boundary, whole batches except at the end (so every example is
// computed in the same batch whatever the shard size).
func (j *Job) checkRange(first int64, count int) error {
	end := first + int64(count)
	if first < 0 || count <= 0 || end > int64(j.Examples) || first%int64(j.Batch) != 0 || (count%j.Batch != 0 && end != int64(j.Examples)) {
		return fmt.Errorf("shard of examples [%d,%d) does not fit job %.16s (%d examples, batch %d)", first, end, j.ID, j.Examples, j.Batch)
	}
	return nil
}

// Passes is 2 with quantiles (boundaries first, then bucket samples), else 1.
func (j *Job) Passes() int {
	if j.Params.Quantiles > 0 {
		return 2
	}
	return 1
}

func (j *Job) computeID() string {
	c := *j
	c.ID = ""
	c.Model = "" // the same model may be named differently on each machine; its hash decides
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Check validates a job read from a queue.
func (j *Job) Check() error {
	switch {
	case j.Version != Version:
		return fmt.Errorf("job %s: version %q, this worker runs %q", j.ID, j.Version, Version)
	case j.ID != j.computeID():
		return fmt.Errorf("job %s: its id does not match its contents", j.ID)
	case len(j.Sites) == 0 || j.Batch <= 0 || j.Examples <= 0:
		return fmt.Errorf("job %s: bad shape (%d sites, batch %d, %d examples)", j.ID, len(j.Sites), j.Batch, j.Examples)
	}
	return nil
}

// parseLayers reads "3", "0-3" or "1,5" (layers of a model with n).
func parseLayers(s string, n int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a {
			return nil, fmt.Errorf("%w: layers %q: want L, A-B or A,B,...", ErrBadSite, s)
		}
		for l := a; l <= b; l++ {
			if l >= n {
				return nil, fmt.Errorf("%w: layer %d: the model has layers 0-%d", ErrBadSite, l, n-1)
			}
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	return out, nil
}

// unitsOf is the number of units of a point: its trailing axes (after
// batch and token) flattened. Points with a key axis are refused.
func unitsOf(p hooks.Point, dims export.Dims) (int, error) {
	shape := p.Shape()
	if p.IsSAE() {
		return 0, fmt.Errorf("%w: %s: harvest SAE latents with --sae POINT@LAYER=AE", ErrBadSite, p)
	}
	n := 1
	for _, d := range shape[2:] {
		if d == hooks.Keys {
			return 0, fmt.Errorf("%w: %s has a key axis (attention scores, patterns, k and v): not harvestable yet", ErrBadSite, p)
		}
		v := dims.Size(d)
		if v <= 0 {
			return 0, fmt.Errorf("%w: %s: unknown size of axis %s", ErrBadSite, p, d)
		}
		n *= v
	}
	return n, nil
}

// parseAt reads one --at value into sites.
func parseAt(v string, nLayers int, dims export.Dims, has func(hooks.Site) bool) ([]SiteSpec, error) {
	path, layers, hasLayers := strings.Cut(v, "@")
	p, err := hooks.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("%w: --at %s: %w", ErrBadSite, v, err)
	}
	units, err := unitsOf(p, dims)
	if err != nil {
		return nil, err
	}
	if !p.PerLayer() {
		if hasLayers {
			return nil, fmt.Errorf("%w: --at %s: %s exists once per pass and takes no @layers", ErrBadSite, v, path)
		}
		if !has(hooks.Site{Point: p, Layer: -1}) {
			return nil, fmt.Errorf("%w: --at %s: the model has no such point", ErrBadSite, v)
		}
		return []SiteSpec{{Point: p.Path(), Layer: -1, Dir: 0, Units: units}}, nil
	}
	var ls []int
	if hasLayers {
		if ls, err = parseLayers(layers, nLayers); err != nil {
			return nil, fmt.Errorf("--at %s: %w", v, err)
		}
	} else {
		for l := 0; l < nLayers; l++ {
			ls = append(ls, l)
		}
	}
	var out []SiteSpec
	for _, l := range ls {
		if !has(hooks.Site{Point: p, Layer: l}) {
			return nil, fmt.Errorf("%w: --at %s: the model has no %s@%d", ErrBadSite, v, p, l)
		}
		out = append(out, SiteSpec{Point: p.Path(), Layer: l, Dir: l, Units: units})
	}
	return out, nil
}

// parseSAE reads one --sae POINT@LAYER=AE value (units filled in later).
func parseSAE(v string, nLayers int, has func(hooks.Site) bool) (SiteSpec, error) {
	site, ref, ok := strings.Cut(v, "=")
	if !ok || ref == "" {
		return SiteSpec{}, fmt.Errorf("%w: --sae %s: want POINT@LAYER=AUTOENCODER", ErrBadSite, v)
	}
	s, err := hooks.ParseSite(site)
	if err != nil {
		return SiteSpec{}, fmt.Errorf("%w: --sae %s: %w", ErrBadSite, v, err)
	}
	if !s.Point.PerLayer() {
		return SiteSpec{}, fmt.Errorf("%w: --sae %s: an SAE reads a per-layer point", ErrBadSite, v)
	}
	if s.Layer >= nLayers || !has(s) {
		return SiteSpec{}, fmt.Errorf("%w: --sae %s: the model has no %s", ErrBadSite, v, s)
	}
	return SiteSpec{Point: hooks.SAELatents.Path(), Layer: s.Layer, Dir: s.Layer, SAE: ref, SAEInput: s.Point.Path()}, nil
}
