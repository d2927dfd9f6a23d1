package export

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrDamaged is returned by VerifyFiles for an exported directory whose
// files do not match its manifest (a truncated weights file, a missing stage
// graph). Resolve exports a cached model again when it sees it.
var ErrDamaged = fmt.Errorf("%w: damaged", ErrNotExported)

// maxManifestBytes bounds manifest.json; a GPT-2 XL manifest is well under
// a megabyte.
const maxManifestBytes = 64 << 20

// checkNames refuses a manifest whose stage, weights or whole-graph files
// are not plain names inside its folder ("../x.onnx", "/etc/x", "a/../../b").
func (m *Manifest) checkNames(dir string) error {
	check := func(what, name string, required bool) error {
		if name == "" && !required {
			return nil
		}
		if !localName(name) {
			return fmt.Errorf("%w: %s: %s %q is not a file inside the folder", ErrNotExported, filepath.Join(dir, ManifestFile), what, name)
		}
		return nil
	}
	for _, s := range m.Stages {
		if err := check("stage "+s.Name, s.File, true); err != nil {
			return err
		}
	}
	if err := check("weights", m.Weights.File, false); err != nil {
		return err
	}
	if err := check("whole graph", m.Whole, false); err != nil {
		return err
	}
	for _, w := range m.Weights.Tensors {
		if w.Offset < 0 || w.Length < 0 || w.Offset > m.Weights.Bytes || w.Length > m.Weights.Bytes-w.Offset {
			return fmt.Errorf("%w: %s: tensor %s (%d bytes at %d) lies outside the weights file of %d bytes",
				ErrNotExported, filepath.Join(dir, ManifestFile), w.Name, w.Length, w.Offset, m.Weights.Bytes)
		}
	}
	return nil
}

// localName reports whether name is a relative path that stays inside its
// folder, with no "." or ".." parts and no backslashes.
func localName(name string) bool {
	if !filepath.IsLocal(name) || strings.Contains(name, `\`) || filepath.Clean(name) != name {
		return false
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." || part == "." || part == "" {
			return false
		}
	}
	return true
}

// VerifyFiles checks cheaply that an exported directory's files are those
// its manifest describes: the weights file has the recorded size, and every
// stage graph (and the whole graph, if any) exists, is not empty and has
// its recorded size when one is recorded. It reads no file's content.
// Failures wrap ErrDamaged.
func VerifyFiles(dir string, m *Manifest) error {
	size := func(name string) (int64, error) {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return 0, fmt.Errorf("%w: %s: %w", ErrDamaged, dir, err)
		}
		if !st.Mode().IsRegular() {
			return 0, fmt.Errorf("%w: %s: %s is not a file", ErrDamaged, dir, name)
		}
		return st.Size(), nil
	}
	if m.Weights.File != "" {
		n, err := size(m.Weights.File)
		if err != nil {
			return err
		}
		if n != m.Weights.Bytes {
			return fmt.Errorf("%w: %s: %s is %d bytes, the manifest says %d", ErrDamaged, dir, m.Weights.File, n, m.Weights.Bytes)
		}
	}
	files := append([]Stage(nil), m.Stages...)
	if m.Whole != "" {
		files = append(files, Stage{Name: "whole", File: m.Whole, Bytes: m.WholeBytes})
	}
	for _, s := range files {
		n, err := size(s.File)
		if err != nil {
			return err
		}
		if n == 0 || (s.Bytes > 0 && n != s.Bytes) {
			return fmt.Errorf("%w: %s: %s is %d bytes, the manifest says %d", ErrDamaged, dir, s.File, n, s.Bytes)
		}
	}
	return nil
}

// RecordSizes records the sizes of the stage graphs (and the whole graph)
// in m, for VerifyFiles. Writers call it after writing the graphs and before
// writing the manifest.
func RecordSizes(dir string, m *Manifest) error {
	for i, s := range m.Stages {
		st, err := os.Stat(filepath.Join(dir, s.File))
		if err != nil {
			return err
		}
		m.Stages[i].Bytes = st.Size()
	}
	if m.Whole != "" {
		st, err := os.Stat(filepath.Join(dir, m.Whole))
		if err != nil {
			return err
		}
		m.WholeBytes = st.Size()
	}
	return nil
}
