package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SingleFile and IndexFile are the names a Hugging Face folder uses for one
// file and for the index of a sharded checkpoint.
const (
	SingleFile = "model.safetensors"
	IndexFile  = "model.safetensors.index.json"
)

// Set is the tensors of a checkpoint folder: one file, or several shards
// joined by their index. It is safe for concurrent reads.
type Set struct {
	files  []*File
	byName map[string]*File
}

// OpenDir opens a folder's model.safetensors, or the shards that
// model.safetensors.index.json lists.
func OpenDir(dir string) (*Set, error) {
	idx, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if errors.Is(err, os.ErrNotExist) {
		f, err := Open(filepath.Join(dir, SingleFile))
		if err != nil {
			return nil, err
		}
		return newSet([]*File{f})
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", IndexFile, err)
	}
	shards, err := ParseIndex(idx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, IndexFile), err)
	}
	var files []*File
	for _, s := range shards {
		f, err := Open(filepath.Join(dir, s))
		if err != nil {
			closeAll(files)
			return nil, err
		}
		files = append(files, f)
	}
	return newSet(files)
}

// ParseIndex returns the shard file names an index names, sorted. A name
// that is not a plain file name in the folder is refused.
func ParseIndex(b []byte) ([]string, error) {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%w: index: %v", ErrFormat, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%w: index has no weight_map", ErrFormat)
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range idx.WeightMap {
		if f == "" || f != filepath.Base(f) || strings.HasPrefix(f, ".") || strings.ContainsAny(f, `/\`) {
			return nil, fmt.Errorf("%w: index names shard %q outside the folder", ErrFormat, f)
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out, nil
}

func newSet(files []*File) (*Set, error) {
	s := &Set{files: files, byName: map[string]*File{}}
	for _, f := range files {
		for name := range f.Tensors {
			if other, dup := s.byName[name]; dup {
				closeAll(files)
				return nil, fmt.Errorf("%w: tensor %s is in both %s and %s", ErrFormat, name, other.path, f.path)
			}
			s.byName[name] = f
		}
	}
	return s, nil
}

func closeAll(files []*File) {
	for _, f := range files {
		f.Close()
	}
}

// Names lists every tensor, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.byName))
	for n := range s.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Info describes a tensor.
func (s *Set) Info(name string) (Info, bool) {
	f, ok := s.byName[name]
	if !ok {
		return Info{}, false
	}
	return f.Tensors[name], true
}

// Has reports whether the set holds a tensor.
func (s *Set) Has(name string) bool { _, ok := s.byName[name]; return ok }

// Float32 reads a tensor widened to float32.
func (s *Set) Float32(name string) ([]float32, []int, error) {
	f, ok := s.byName[name]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrNoTensor, name)
	}
	return f.Float32(name)
}

// Close closes every file.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
