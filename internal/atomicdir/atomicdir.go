package atomicdir

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
)

// Exists says what to do when the destination exists by the time the new
// folder is complete.
type Exists int

const (
	// Replace moves the existing folder aside, renames the new one into
	// place and removes the old one (restoring it if the rename fails).
	Replace Exists = iota
	// Keep leaves the existing folder (another writer finished first) and
	// discards the new one.
	Keep
)

// Write creates a temporary sibling of out, lets fill populate it and
// renames it to out. onExists decides when out exists at that point (nil:
// Replace); it is asked again if the final rename fails, so that a
// concurrent writer that won the race is kept.
func Write(out string, fill func(tmp string) error, onExists func(out string) Exists) (err error) {
	out = filepath.Clean(out)
	if onExists == nil {
		onExists = func(string) Exists { return Replace }
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp-" + Suffix()
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := fill(tmp); err != nil {
		return err
	}
	if _, statErr := os.Stat(out); statErr == nil {
		if onExists(out) == Keep {
			os.RemoveAll(tmp)
			return nil
		}
		old := out + ".old-" + Suffix()
		if err := os.Rename(out, old); err != nil {
			return err
		}
		if err := os.Rename(tmp, out); err != nil {
			os.Rename(old, out)
			return err
		}
		return os.RemoveAll(old)
	}
	if err := os.Rename(tmp, out); err != nil {
		if _, statErr := os.Stat(out); statErr == nil && onExists(out) == Keep {
			os.RemoveAll(tmp)
			return nil
		}
		return err
	}
	return nil
}

// Suffix is a random suffix for temporary names.
func Suffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
