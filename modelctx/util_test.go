package modelctx

import (
	"os"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// tempDirs are the folders made for once-per-binary fixtures; TestMain
// removes them.
var tempDirs []string

func osMkdirTemp() (string, error) {
	d, err := os.MkdirTemp("", "onnx-tdb-test-")
	if err == nil {
		tempDirs = append(tempDirs, d)
	}
	return d, err
}

func removeTempDirs() {
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
}

// observeEveryPoint is a read-only observer, doing nothing, at every point
// m has.
func observeEveryPoint(m *Transformer) *hooks.Hooks {
	h := hooks.New()
	seen := map[hooks.Point]bool{}
	for _, s := range m.Sites() {
		if !seen[s.Point] {
			seen[s.Point] = true
			h.Observe(s.Point, func(*hooks.Context, *hooks.Tensor) error { return nil })
		}
	}
	return h
}
