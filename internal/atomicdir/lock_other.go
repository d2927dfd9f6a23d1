//go:build !unix

package atomicdir

import (
	"os"
	"time"
)

// Without flock, a temporary counts as a leftover by age alone: one
// untouched for a day.

func lockDir(string) (func(), error) { return func() {}, nil }

// LockFile does nothing on this platform.
func LockFile(*os.File) error { return nil }

// Locked reports whether path was modified within the last day.
func Locked(path string) bool {
	st, err := os.Stat(path)
	return err == nil && time.Since(st.ModTime()) < 24*time.Hour
}
