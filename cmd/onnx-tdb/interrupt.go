package main

import (
	"context"
	"fmt"
	"time"

	"github.com/onnx-tdb/onnx-tdb/internal/progress"
)

// errInterrupted wraps the context's error when a command stops at Ctrl-C.
var errInterrupted = fmt.Errorf("interrupted")

// untilDone runs work that does not itself watch ctx (an export writes
// gigabytes without looking up), and returns as soon as ctx is done, so the
// command exits non-zero at once. The work is abandoned, not stopped: the
// process ends right after, before anything is renamed into place, and its
// temporary files are removed by the next run (see internal/atomicdir).
func untilDone(ctx context.Context, work func() error) error {
	return untilDoneShowing(ctx, "", work)
}

// spinnerDelay is how long work runs before a terminal shows it is busy.
const spinnerDelay = time.Second

// untilDoneShowing is untilDone that, on a terminal, shows a spinner
// labelled desc while work runs longer than spinnerDelay (an export on
// first use would otherwise be silent for a minute).
func untilDoneShowing(ctx context.Context, desc string, work func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", errInterrupted, err)
	}
	done := make(chan error, 1)
	go func() { done <- work() }()
	var bar *progress.Bar
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	defer func() { bar.Finish() }()
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", errInterrupted, ctx.Err())
		case <-tick.C:
			if desc != "" && bar == nil && time.Since(start) >= spinnerDelay {
				bar = progress.New(-1, desc, progress.Options{Clear: true})
			}
			bar.Add(1)
		}
	}
}
