package modelctx

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// A plan that reads every point is cut at the stage boundaries only as
// often as Options.ReadMemory needs: in one session when the pass's read
// tensors fit, at every boundary when not (or when told to); a plan that is
// cut has one more session, the unembedding (runtime.Graph.Head).
func TestReadsCutOnlyForMemory(t *testing.T) {
	m0, err := Open(goldenModel(t))
	if err != nil {
		t.Fatal(err)
	}
	allRead := observeEveryPoint(m0)
	layers := m0.NLayers()
	m0.Close()
	for _, c := range []struct {
		name     string
		budget   int64
		sessions int
	}{
		{"default budget", 0, 1 + 1}, // uncut, and the unembedding (Graph.Head)
		{"every boundary", -1, layers + 1 + 1},
		{"a budget below one layer's reads", 1, layers + 1 + 1},
	} {
		out := t.TempDir()
		m, err := Open(goldenModel(t), WithRuntime(runtime.Options{OptimizedDir: out, ReadMemory: c.budget}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Forward(context.Background(), [][]int{{464, 2068, 7586}}, WithHooks(allRead)); err != nil {
			t.Fatal(err)
		}
		m.Close()
		files, _ := filepath.Glob(filepath.Join(out, "*.onnx"))
		if len(files) != c.sessions {
			t.Errorf("%s: %d sessions, want %d", c.name, len(files), c.sessions)
		}
	}
}
