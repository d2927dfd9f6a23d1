// Package fileio reads the small files onnx-tdb takes from anywhere (a
// manifest, a converted SAE's description) with a bound on their size, so
// a hostile file cannot make a reader allocate more than it expects. It
// sits at the start of the data path, under export and sae.
package fileio

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is returned for a file over the caller's limit.
var ErrTooLarge = errors.New("file too large")

// ReadLimited reads a whole file of at most limit bytes.
func ReadLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than %d: %w", path, st.Size(), limit, ErrTooLarge)
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
