package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// TestUntilDoneReturnsAtCancel: long work that does not watch the context
// no longer holds the command: it returns at the cancellation.
func TestUntilDoneReturnsAtCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	defer close(release)
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	err := untilDone(ctx, func() error { <-release; return nil })
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errInterrupted) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned after %v", d)
	}
}

// TestExportCanceledLeavesNothing: an export whose context is done exits
// with an error and nothing under the output name.
func TestExportCanceledLeavesNothing(t *testing.T) {
	golden.RequireShared(t, "model")
	out := filepath.Join(t.TempDir(), "exp")
	app := newApp()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := app.RunContext(ctx, []string{"onnx-tdb", "--cache", testCache, "export", "-m", golden.ModelDir(), "-o", out})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s exists after a canceled export", out)
	}
}

// TestHelperCLI runs the command line of $ONNX_TDB_CLI_ARGS as the real
// program does, for tests that signal it.
func TestHelperCLI(t *testing.T) {
	args := os.Getenv("ONNX_TDB_CLI_HELPER")
	if args == "" {
		t.Skip("helper process only")
	}
	os.Args = append([]string{"onnx-tdb"}, filepath.SplitList(args)...)
	benchSelf = helperSelf // bench --processes starts this binary as the program too
	main()
	os.Exit(0)
}

// TestCtrlCStopsExport: SIGINT during an export of a model large enough to
// take a while makes the process exit non-zero within two seconds, leaving
// nothing under the output name.
func TestCtrlCStopsExport(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 150 MB checkpoint")
	}
	root := t.TempDir()
	ck := filepath.Join(root, "ck")
	if _, err := runCLI(t, "random-checkpoint", "-o", ck, "--layers", "2"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "exp")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCLI$")
	cmd.Env = append(os.Environ(), "ONNX_TDB_CLI_HELPER="+joinList("--cache", filepath.Join(root, "cache"), "export", "-m", ck, "-o", out))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	sent := time.Now()
	err := cmd.Wait()
	took := time.Since(sent)
	if took > 2*time.Second {
		t.Fatalf("exited %v after SIGINT (%v)", took, err)
	}
	if err == nil {
		t.Skip("the export finished before the interrupt")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s exists after an interrupted export", out)
	}
}

func joinList(parts ...string) string {
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += string(filepath.ListSeparator)
		}
		s += p
	}
	return s
}

// helperSelf runs this test binary as the program with args (TestHelperCLI).
func helperSelf(ctx context.Context, args []string) (*exec.Cmd, error) {
	exe, err := os.Executable() // TestHelperCLI rewrites os.Args
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestHelperCLI$")
	cmd.Env = append(os.Environ(), "ONNX_TDB_CLI_HELPER="+joinList(args...))
	return cmd, nil
}

// TestCtrlCStopsBenchProcesses: SIGINT to bench --processes interrupts the
// running child, which stops its rounds and exits with its own error, and
// the command exits within a few seconds.
func TestCtrlCStopsBenchProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes that open the model")
	}
	golden.RequireShared(t, "model")
	cmd, err := helperSelf(context.Background(), []string{"--cache", testCache, "bench", "-m", golden.ModelDir(),
		"--shapes", "1x3", "--paths", "whole,no-hooks", "--sample", "", "--min-time", "60s", "--max-time", "60s",
		"--instances", "1", "--processes", "2"})
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the child's rounds to start.
	started := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "rounds cycle through") {
				started <- true
			}
		}
		started <- false
		io.Copy(io.Discard, out)
	}()
	select {
	case ok := <-started:
		if !ok {
			cmd.Wait()
			t.Fatalf("bench ended before its rounds started: %s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("no rounds after 60 s")
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	sent := time.Now()
	err = cmd.Wait()
	if took := time.Since(sent); took > 5*time.Second {
		t.Errorf("exited %v after SIGINT", took)
	}
	if err == nil {
		t.Error("an interrupted bench exited 0")
	}
	// The child said why it stopped (an interrupted run), as a killed one
	// could not; then the parent.
	if n := strings.Count(stderr.String(), "onnx-tdb:"); n < 2 {
		t.Errorf("%d error lines, want the child's and the parent's: %s", n, stderr.String())
	}
}
