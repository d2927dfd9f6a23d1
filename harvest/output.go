package harvest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/onnx-tdb/onnx-tdb/harvest/collect"
	"github.com/onnx-tdb/onnx-tdb/harvest/corpus"
	"github.com/onnx-tdb/onnx-tdb/harvest/records"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
)

// StateDir is the folder inside the output folder that holds a running
// job's claim and, by default, its NATS store. It is removed when the job
// completes.
const StateDir = ".harvest"

const (
	claimFile    = "job.json"
	manifestFile = "manifest.json"
)

// Manifest is DIR/manifest.json, written last: its presence marks a
// complete harvest.
type Manifest struct {
	Format       string         `json:"format"`
	Version      string         `json:"version"`
	Job          string         `json:"job"`
	Model        string         `json:"model"`
	ModelHash    string         `json:"model_hash"`
	Corpus       []corpus.File  `json:"corpus"`
	Context      int            `json:"context"`
	Examples     int            `json:"examples"`
	Tokens       int            `json:"tokens"`
	StreamTokens int            `json:"stream_tokens"`
	Params       collect.Params `json:"params"`
	Batch        int            `json:"batch"`
	Points       []SiteSpec     `json:"points"`
	// QuantileBoundaries says how the records' quantile boundaries were
	// found: "exact", or from a sketch with its rank error ("" without
	// quantiles).
	QuantileBoundaries string `json:"quantile_boundaries,omitempty"`
}

// quantileMethod describes how a job's quantile boundaries are found.
func quantileMethod(p collect.Params, examples int) string {
	switch {
	case p.Quantiles == 0:
		return ""
	case p.SketchLeaf == 0:
		return "exact"
	}
	return fmt.Sprintf("sketch with leaves of %d examples: each boundary's rank within %.2f%% of the examples of its target",
		p.SketchLeaf, 100*collect.SketchErrorBound(examples, p.SketchLeaf))
}

type claim struct {
	Job string `json:"job"`
}

// claimOut checks the output folder for job: done when it already holds
// this job's finished output; ErrOtherJob when it holds another job or
// other files; otherwise it records the claim (resuming a claim of the same
// job).
func claimOut(out string, job *Job) (done bool, err error) {
	if raw, err := os.ReadFile(filepath.Join(out, manifestFile)); err == nil {
		var m Manifest
		if json.Unmarshal(raw, &m) == nil && m.Job == job.ID {
			return true, nil
		}
		return false, fmt.Errorf("%w: %s holds a finished harvest of job %.16s, this is job %.16s (choose another --out)", ErrOtherJob, out, m.Job, job.ID)
	}
	claimPath := filepath.Join(out, StateDir, claimFile)
	if raw, err := os.ReadFile(claimPath); err == nil {
		var c claim
		if json.Unmarshal(raw, &c) == nil && c.Job == job.ID {
			return false, nil
		}
		return false, fmt.Errorf("%w: %s holds an unfinished harvest of job %.16s, this is job %.16s (rerun that job to finish it, or choose another --out)", ErrOtherJob, out, c.Job, job.ID)
	}
	entries, err := os.ReadDir(out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("output folder %s: %w", out, err)
	}
	for _, e := range entries {
		if e.Name() != StateDir {
			return false, fmt.Errorf("%w: %s is not empty and holds no harvest (%s)", ErrOtherJob, out, e.Name())
		}
	}
	if err := os.MkdirAll(filepath.Join(out, StateDir), 0o755); err != nil {
		return false, fmt.Errorf("output folder %s: %w", out, err)
	}
	b, _ := json.Marshal(claim{Job: job.ID})
	return false, writeFileAtomic(claimPath, b)
}

// writeFileAtomic writes data to a temporary name beside path and renames it.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp-" + atomicdir.Suffix()
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// result is a job's merged state, ready to become records.
type result struct {
	job    *Job
	pass1  []*collect.Site
	pass2  []*collect.Site // nil without quantiles
	bounds [][]float32     // per site, with quantiles
	vocab  func(id int32) string
	tokens []int32
}

func (r *result) example(e collect.Example) records.ActivationRecord {
	T := r.job.Params.Context
	toks := make([]string, T)
	for t, id := range r.tokens[int(e.Index)*T : int(e.Index+1)*T] {
		toks[t] = r.vocab(id)
	}
	return records.ActivationRecord{Tokens: toks, Activations: e.Acts}
}

func (r *result) list(es []collect.Example) []records.ActivationRecord {
	out := make([]records.ActivationRecord, len(es))
	for i, e := range es {
		out[i] = r.example(e)
	}
	return out
}

// record builds the NeuronRecord of unit u of site i.
func (r *result) record(i, u int) *records.NeuronRecord {
	s := r.pass1[i]
	m := s.Moments(u)
	rec := &records.NeuronRecord{
		ID:           records.NeuronID{Layer: r.job.Sites[i].Dir, Index: u},
		RandomSample: r.list(s.Random(u)),
		Mean:         m.Mean, Variance: m.Variance, Skewness: m.Skewness, Kurtosis: m.Kurtosis,
		MostPositive: r.list(s.Top(u)),
	}
	if r.pass2 != nil {
		rec.QuantileBoundaries = collect.UnitBoundaries(r.bounds[i], r.job.Params.Quantiles, u)
		for _, b := range r.pass2[i].Buckets(u) {
			rec.RandomSampleByQuantile = append(rec.RandomSampleByQuantile, r.list(b))
		}
	}
	return rec
}

// write puts every record under a staging folder in DIR/.harvest, moves
// each point's folder into DIR, and writes DIR/manifest.json last.
func (r *result) write(out string, man *Manifest) error {
	stage := filepath.Join(out, StateDir, "staging-"+atomicdir.Suffix())
	defer os.RemoveAll(stage)
	points := []string{}
	seen := map[string]bool{}
	for i, s := range r.job.Sites {
		dir := filepath.Join(stage, s.Point, "collated-activations", strconv.Itoa(s.Dir))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("write records: %w", err)
		}
		for u := 0; u < s.Units; u++ {
			p := filepath.Join(dir, strconv.Itoa(u)+".json")
			if err := os.WriteFile(p, records.Marshal(r.record(i, u)), 0o644); err != nil {
				return fmt.Errorf("write records of %s@%d: %w", s.Point, s.Dir, err)
			}
		}
		if !seen[s.Point] {
			seen[s.Point] = true
			points = append(points, s.Point)
		}
	}
	for _, p := range points {
		dst := filepath.Join(out, p)
		if err := os.RemoveAll(dst); err != nil { // left by an interrupted finish of this job
			return fmt.Errorf("write records: %w", err)
		}
		if err := os.Rename(filepath.Join(stage, p), dst); err != nil {
			return fmt.Errorf("write records: %w", err)
		}
	}
	b, err := json.MarshalIndent(man, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(out, manifestFile), append(b, '\n'))
}
