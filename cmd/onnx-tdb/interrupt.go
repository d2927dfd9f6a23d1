package main

import (
	"context"
	"fmt"
)

// errInterrupted wraps the context's error when a command stops at Ctrl-C.
var errInterrupted = fmt.Errorf("interrupted")

// untilDone runs work that does not itself watch ctx (an export writes
// gigabytes without looking up), and returns as soon as ctx is done, so the
// command exits non-zero at once. The work is abandoned, not stopped: the
// process ends right after, before anything is renamed into place, and its
// temporary files are removed by the next run (see internal/atomicdir).
func untilDone(ctx context.Context, work func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", errInterrupted, err)
	}
	done := make(chan error, 1)
	go func() { done <- work() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", errInterrupted, ctx.Err())
	}
}
