package serve

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// gate lets at most n runs go at once; up to maxQueue more wait their turn.
type gate struct {
	slots    chan struct{}
	waiting  atomic.Int64
	maxQueue int64
}

func newGate(n, maxQueue int) *gate {
	return &gate{slots: make(chan struct{}, n), maxQueue: int64(maxQueue)}
}

// acquire waits for a slot for at most timeout; release gives it back. A
// full queue and a timeout are 503 answers; a cancelled ctx is the
// client's.
func (g *gate) acquire(ctx context.Context, timeout time.Duration) (release func(), err error) {
	select {
	case g.slots <- struct{}{}:
		return g.release, nil
	default:
	}
	if g.waiting.Add(1) > g.maxQueue {
		g.waiting.Add(-1)
		return nil, errorf(http.StatusServiceUnavailable, "%v: %d runs going and %d waiting (limit max_queue)", ErrBusy, cap(g.slots), g.maxQueue)
	}
	defer g.waiting.Add(-1)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return g.release, nil
	case <-t.C:
		return nil, errorf(http.StatusServiceUnavailable, "%v: no run slot free within %s (limit queue_timeout; max_concurrent %d)", ErrBusy, timeout, cap(g.slots))
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a run slot: %w", ctx.Err())
	}
}

func (g *gate) release() { <-g.slots }
