//go:build unix

package atomicdir

import (
	"os"
	"syscall"
)

// lockDir takes an exclusive lock on the folder (or file) at path, held
// until unlock is called or the process ends.
func lockDir(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return func() {}, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return func() {}, err
	}
	return func() { f.Close() }, nil
}

// LockFile takes an exclusive lock on an open file, held until it is closed
// or the process ends, so that Leftover knows its writer is alive.
func LockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// Locked reports whether a live process holds the lock on path.
func Locked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
