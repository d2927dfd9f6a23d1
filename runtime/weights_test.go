package runtime

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

func TestGatherTables(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(b *graphs.Builder)
		want  bool
	}{
		{"gathered only", func(b *graphs.Builder) {
			b.Output(b.Op("Gather", "y", []string{"E", "ids"}), graphs.Float, "T", "4")
		}, true},
		{"gathered and multiplied", func(b *graphs.Builder) {
			g := b.Op("Gather", "g", []string{"E", "ids"})
			b.Output(b.Op("MatMul", "y", []string{g, "E"}), graphs.Float, "T", "4")
		}, false},
		{"the indices of a Gather", func(b *graphs.Builder) {
			b.Output(b.Op("Gather", "y", []string{"ids2", "E"}), graphs.Float, "T", "4")
		}, false},
		{"a graph output", func(b *graphs.Builder) {
			b.Op("Gather", "y", []string{"E", "ids"})
			b.Output("E", graphs.Float, "8", "4")
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := graphs.NewBuilder("g")
			b.Input("ids", graphs.Int64, "T")
			b.External("E", []int64{8, 4}, "e.bin", 0, 128)
			tc.build(b)
			if got := gatherTables(b.Model().GetGraph())["E"]; got != tc.want {
				t.Errorf("E is a table: %v, want %v", got, tc.want)
			}
		})
	}
}

var sink byte

// residentPages counts the pages of b mapped into this process now.
func residentPages(t *testing.T, b []byte) int {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skip("no pagemap:", err)
	}
	defer f.Close()
	page := uintptr(os.Getpagesize())
	n := 0
	for p := uintptr(unsafe.Pointer(&b[0])); p < uintptr(unsafe.Pointer(&b[0]))+uintptr(len(b)); p += page {
		var e [8]byte
		if _, err := f.ReadAt(e[:], int64(p/page*8)); err != nil {
			t.Skip("pagemap unreadable:", err)
		}
		if binary.LittleEndian.Uint64(e[:])>>63 == 1 {
			n++
		}
	}
	return n
}

// TestRunsDropEmbeddingPages: the pages of a table only Gather reads leave
// the resident set once a run is done (they would otherwise pile up, row by
// row, over a corpus).
func TestRunsDropEmbeddingPages(t *testing.T) {
	dir := t.TempDir()
	const V, D = 1024, 64
	if err := os.WriteFile(filepath.Join(dir, "e.bin"), make([]byte, 4*V*D), 0o644); err != nil {
		t.Fatal(err)
	}
	b := graphs.NewBuilder("embed")
	ids := b.Input("ids", graphs.Int64, "T")
	E := b.External("E", []int64{V, D}, "e.bin", 0, 4*V*D)
	b.Output(b.Op("Gather", "y", []string{E, ids}), graphs.Float, "T", "64")
	site := hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}
	e, err := NewEngine(&Graph{Model: b.Model(), Dir: dir, Points: map[hooks.Site]PointRef{site: {Tensor: "y"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if len(e.ws.tables) != 1 {
		t.Fatalf("%d tables found, want 1", len(e.ws.tables))
	}
	table := e.ws.tables[0]
	touch := func() {
		var sum byte
		for i := 0; i < len(table); i += 4096 {
			sum += table[i] // every page resident
		}
		sink = sum
	}
	touch()
	if n := residentPages(t, table); n == 0 {
		t.Skip("reading the mapping made no page resident")
	}
	in := map[string]*Tensor{"ids": {Shape: []int64{3}, I64: []int64{1, 500, 1000}}}
	if _, err := e.Run(context.Background(), Request{Inputs: in, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	if n := residentPages(t, table); n != 0 {
		t.Errorf("%d pages of the table resident after a run", n)
	}

	// A gradient's forward pass reads the table too.
	touch()
	seed := func(root *hooks.Tensor) (*hooks.Tensor, error) {
		g := &hooks.Tensor{Shape: slices.Clone(root.Shape), Data: make([]float32, len(root.Data))}
		for i := range g.Data {
			g.Data[i] = 1
		}
		return g, nil
	}
	if _, err := e.Backward(context.Background(), BackwardRequest{Inputs: in, Root: site, Seed: seed, Grads: []hooks.Site{site}}); err != nil {
		t.Fatal(err)
	}
	if n := residentPages(t, table); n != 0 {
		t.Errorf("%d pages of the table resident after a gradient", n)
	}
}

// TestSmallWeightsLeaveTheMapping: a small initializer (a bias) is copied out
// of the weights' mapping, so runs read none of the file's pages: read in
// place, each run mapped the pages around it again (a whole large folio of
// the page cache on recent kernels: ~130 MB of GPT-2 small's big weights
// resident after every run).
func TestSmallWeightsLeaveTheMapping(t *testing.T) {
	dir := t.TempDir()
	const D = 64
	buf := make([]byte, 1<<20+4*D) // the bias after 1 MiB of other weights
	for i := 0; i < D; i++ {
		binary.LittleEndian.PutUint32(buf[1<<20+4*i:], math.Float32bits(float32(i)))
	}
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	b := graphs.NewBuilder("bias")
	x := b.Input("x", graphs.Float, "T", "64")
	bias := b.External("bias", []int64{D}, "w.bin", 1<<20, 4*D)
	b.Output(b.Op("Add", "y", []string{x, bias}), graphs.Float, "T", "64")
	e, err := NewEngine(&Graph{Model: b.Model(), Dir: dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	in := map[string]*Tensor{"x": {Shape: []int64{2, D}, F32: make([]float32, 2*D)}}
	for run := 0; run < 2; run++ {
		out, err := e.Run(context.Background(), Request{Inputs: in, Outputs: []string{"y"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := out["y"].F32[D+5]; got != 5 {
			t.Fatalf("y[1,5] = %v, want 5", got)
		}
		if n := residentPages(t, e.ws.maps["w.bin"]); n != 0 {
			t.Errorf("run %d: %d pages of the weights file resident", run, n)
		}
	}
}
