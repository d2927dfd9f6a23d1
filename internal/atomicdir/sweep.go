package atomicdir

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MinLeftoverAge is how old an unlocked temporary must be before it counts
// as left over: a writer takes its lock right after creating it, so this
// only has to cover that moment.
var MinLeftoverAge = 10 * time.Second

// PartInfix marks a download in progress (<final>.part-<random>), written by
// export/fetch, which locks the file while it writes it.
const PartInfix = ".part-"

// Leftover reports whether path (a <x>.tmp-* folder, a <x>.part-* file or a
// <x>.old-* folder) was left by a writer that is gone: no process holds its
// lock and it is older than MinLeftoverAge. An <x>.old-* folder is a
// replaced folder whose removal was interrupted; it is a leftover once <x>
// exists again.
func Leftover(path string) bool {
	base := filepath.Base(path)
	st, err := os.Lstat(path)
	if err != nil || time.Since(st.ModTime()) < MinLeftoverAge {
		return false
	}
	switch {
	case strings.Contains(base, TmpInfix) && st.IsDir(), strings.Contains(base, PartInfix) && st.Mode().IsRegular():
		return !Locked(path)
	case strings.Contains(base, OldInfix) && st.IsDir():
		_, err := os.Stat(path[:len(path)-len(base)] + base[:strings.LastIndex(base, OldInfix)])
		return err == nil
	}
	return false
}

// SweepSiblings removes the leftovers beside out (<out>.tmp-*, <out>.old-*,
// <out>.part-*). Best effort.
func SweepSiblings(out string) {
	dir, base := filepath.Dir(out), filepath.Base(out)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, base+TmpInfix) && !strings.HasPrefix(name, base+OldInfix) && !strings.HasPrefix(name, base+PartInfix) {
			continue
		}
		if p := filepath.Join(dir, name); Leftover(p) {
			os.RemoveAll(p)
		}
	}
}

// Sweep removes every leftover under root (a cache folder) and returns what
// it removed and how many bytes that freed. Folders being written by live
// processes are kept.
func Sweep(root string) (removed []string, freed int64, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil
		}
		name := d.Name()
		if p == root || !(strings.Contains(name, TmpInfix) || strings.Contains(name, OldInfix) || strings.Contains(name, PartInfix)) {
			return nil
		}
		if Leftover(p) {
			n := DiskUsage(p)
			if os.RemoveAll(p) == nil {
				removed = append(removed, p)
				freed += n
			}
		}
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	return removed, freed, err
}

// DiskUsage is the total size of the regular files under path.
func DiskUsage(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
