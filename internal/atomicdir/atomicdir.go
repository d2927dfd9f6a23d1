package atomicdir

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// TmpInfix and OldInfix mark temporary siblings: <out>.tmp-<random> is a
// folder being filled, <out>.old-<random> a replaced one being removed.
const (
	TmpInfix = ".tmp-"
	OldInfix = ".old-"
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
	return WriteContext(context.Background(), out, func(_ context.Context, tmp string) error { return fill(tmp) }, onExists)
}

// WriteContext is Write for long work: fill gets ctx and should stop when it
// is done; once ctx is done, nothing is renamed into place (the temporary
// folder is removed and ctx's error returned), even if fill returned nil.
func WriteContext(ctx context.Context, out string, fill func(ctx context.Context, tmp string) error, onExists func(out string) Exists) (err error) {
	out = filepath.Clean(out)
	if onExists == nil {
		onExists = func(string) Exists { return Replace }
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	SweepSiblings(out)
	tmp := out + TmpInfix + Suffix()
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	unlock, lockErr := lockDir(tmp)
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
		unlock()
	}()
	if lockErr != nil {
		return fmt.Errorf("lock %s: %w", tmp, lockErr)
	}
	if err := fill(ctx, tmp); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := syncTree(tmp); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	defer syncDir(filepath.Dir(out))
	if _, statErr := os.Stat(out); statErr == nil {
		if onExists(out) == Keep {
			os.RemoveAll(tmp)
			return nil
		}
		old := out + OldInfix + Suffix()
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

// syncTree syncs every regular file under dir, then the folders, deepest
// first.
func syncTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return syncPath(p)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syncPath(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a rename in dir durable. Best effort: some file systems
// cannot sync a folder.
func syncDir(dir string) { syncPath(dir) }
