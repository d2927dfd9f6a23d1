package atomicdir

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func old(t *testing.T, p string) {
	t.Helper()
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, past, past); err != nil {
		t.Fatal(err)
	}
}

// TestNextWriteRemovesLeftovers: a temporary folder whose writer is gone is
// removed by the next write beside it; one whose writer holds its lock is
// kept.
func TestNextWriteRemovesLeftovers(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "model")
	dead := out + TmpInfix + "dead"
	live := out + TmpInfix + "live"
	oldDir := out + OldInfix + "x"
	for _, d := range []string{dead, live, oldDir} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		old(t, d)
	}
	unlock, err := lockDir(live)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if err := Write(out, write("a", "1"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("leftover %s kept: %v", dead, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("folder of a live writer removed: %v", err)
	}
	// The .old folder goes once out exists again: on the next write.
	if err := Write(out, write("a", "2"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(oldDir); !os.IsNotExist(err) {
		t.Errorf("leftover %s kept: %v", oldDir, err)
	}
}

// TestSweep removes stale temporaries and .part files anywhere under a cache,
// keeping locked and young ones, and reports the bytes freed.
func TestSweep(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string, size int, dir bool) string {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if dir {
			os.MkdirAll(p, 0o755)
			os.WriteFile(filepath.Join(p, "w.bin"), make([]byte, size), 0o644)
		} else {
			os.WriteFile(p, make([]byte, size), 0o644)
		}
		return p
	}
	staleTmp := mk("exported/a/b"+TmpInfix+"1", 1000, true)
	stalePart := mk("blobs/x/y.pt"+PartInfix+"2", 500, false)
	lockedPart := mk("blobs/x/z.pt"+PartInfix+"3", 10, false)
	young := mk("blobs/x/w.pt"+PartInfix+"4", 10, false)
	keep := mk("blobs/x/v.pt", 10, false)
	for _, p := range []string{staleTmp, stalePart, lockedPart, keep} {
		old(t, p)
	}
	f, err := os.OpenFile(lockedPart, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := LockFile(f); err != nil {
		t.Fatal(err)
	}
	removed, freed, err := Sweep(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || freed != 1500 {
		t.Errorf("removed %v (%d bytes), want the stale tmp folder and part file (1500 bytes)", removed, freed)
	}
	for _, p := range []string{lockedPart, young, keep} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed", p)
		}
	}
}

// TestWriteContextCanceled: once the context is done nothing is renamed into
// place, even when fill finishes, and nothing temporary is left.
func TestWriteContextCanceled(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "m")
	ctx, cancel := context.WithCancel(context.Background())
	err := WriteContext(ctx, out, func(ctx context.Context, tmp string) error {
		os.WriteFile(filepath.Join(tmp, "a"), []byte("x"), 0o644)
		cancel() // Ctrl-C arrives while the last file is written
		return nil
	}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if names := entries(t, root); len(names) != 0 {
		t.Errorf("left %v", names)
	}
	if err := WriteContext(ctx, out, func(context.Context, string) error {
		t.Fatal("fill called with a done context")
		return nil
	}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// TestKilledWriterLeftoverRemoved: a writer process killed mid-fill leaves
// its temporary folder; its lock dies with it, and the next write removes it.
func TestKilledWriterLeftoverRemoved(t *testing.T) {
	if dir := os.Getenv("ATOMICDIR_HELPER_OUT"); dir != "" {
		WriteContext(context.Background(), dir, func(_ context.Context, tmp string) error {
			os.WriteFile(filepath.Join(tmp, "started"), nil, 0o644)
			time.Sleep(time.Minute)
			return nil
		}, nil)
		os.Exit(0)
	}
	root := t.TempDir()
	out := filepath.Join(root, "m")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterLeftoverRemoved$")
	cmd.Env = append(os.Environ(), "ATOMICDIR_HELPER_OUT="+out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var tmp string
	for deadline := time.Now().Add(20 * time.Second); tmp == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, n := range entries(t, root) {
			if strings.Contains(n, TmpInfix) {
				if _, err := os.Stat(filepath.Join(root, n, "started")); err == nil {
					tmp = filepath.Join(root, n)
				}
			}
		}
	}
	if tmp == "" {
		cmd.Process.Kill()
		t.Fatal("helper never started writing")
	}
	defer func(a time.Duration) { MinLeftoverAge = a }(MinLeftoverAge)
	MinLeftoverAge = 0
	if Leftover(tmp) {
		t.Fatal("a live writer's folder counts as a leftover")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !Leftover(tmp) {
		t.Fatal("a killed writer's folder does not count as a leftover")
	}
	if err := Write(out, write("a", "1"), nil); err != nil {
		t.Fatal(err)
	}
	if names := entries(t, root); len(names) != 1 || names[0] != "m" {
		t.Errorf("after the next write: %v", names)
	}
}
