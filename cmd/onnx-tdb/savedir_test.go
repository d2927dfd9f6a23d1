package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestSaveActivationsAllOrNothing: a failure or a cancellation part-way
// leaves nothing under the folder's name (it used to leave the files written
// so far, with nothing marking the folder incomplete).
func TestSaveActivationsAllOrNothing(t *testing.T) {
	good := hooks.Zeros(1, 2, 3)
	bad := &hooks.Tensor{Shape: []int{1, 2, 3}, Data: make([]float32, 5)} // npy.Write refuses it
	out := &modelctx.Output{Logits: good, Activations: map[hooks.Site]*hooks.Tensor{{Point: hooks.MLPPostAct, Layer: 0}: bad}}
	root := t.TempDir()
	dir := filepath.Join(root, "acts")
	if err := saveActivations(context.Background(), dir, out); err == nil {
		t.Fatal("a bad tensor was saved")
	}
	if names := listDir(t, root); len(names) != 0 {
		t.Fatalf("after a failure: %v", names)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out.Activations = map[hooks.Site]*hooks.Tensor{{Point: hooks.MLPPostAct, Layer: 0}: good}
	if err := saveActivations(ctx, dir, out); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
	if names := listDir(t, root); len(names) != 0 {
		t.Fatalf("after a cancellation: %v", names)
	}
	if err := saveActivations(context.Background(), dir, out); err != nil {
		t.Fatal(err)
	}
	if names := listDir(t, dir); len(names) != 2 {
		t.Fatalf("saved %v", names)
	}
	// A rerun replaces an earlier run's output whole.
	os.WriteFile(filepath.Join(dir, "stale.npy"), nil, 0o644)
	if err := saveActivations(context.Background(), dir, out); err != nil {
		t.Fatal(err)
	}
	if names := listDir(t, dir); len(names) != 2 {
		t.Fatalf("after a rerun: %v", names)
	}
	// A folder holding anything else is not replaced.
	other := filepath.Join(root, "mine")
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("keep"), 0o644)
	if err := saveActivations(context.Background(), other, out); !errors.Is(err, errNotNpyFolder) {
		t.Fatalf("into a folder of other files: %v", err)
	}
	if names := listDir(t, other); len(names) != 1 {
		t.Fatalf("other folder touched: %v", names)
	}
}
