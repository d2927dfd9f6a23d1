package runtime

import (
	"sync/atomic"
	"testing"
	"time"
)

// A drop slower than the pager's interval must not make the pager drop
// without pause: the interval stretches so that dropping takes at most
// pagerDuty of the time. (A fixed tick shorter than a drop kept ONNX
// Runtime faulting the same weight pages in while it prepacked: a plan
// build of GPT-2 small took 20 times longer.)
func TestPagerBoundsItsDutyCycle(t *testing.T) {
	const (
		every = time.Millisecond
		took  = 4 * time.Millisecond
		span  = 300 * time.Millisecond
	)
	var drops atomic.Int64
	stop := runPager(every, 0.1, func() {
		drops.Add(1)
		time.Sleep(took)
	})
	time.Sleep(span)
	stop()
	n := drops.Load()
	// Each drop and the wait after it take at least 10*took = 40 ms: at
	// most 8 in 300 ms, plus the one stop makes. A fixed 1 ms tick would
	// have dropped ~60 times.
	if max := int64(span/(10*took)) + 2; n > max {
		t.Errorf("%d drops in %v of 4 ms each, want at most %d (duty cycle 10%%)", n, span, max)
	}
	if n < 2 {
		t.Errorf("%d drops in %v, want the pager to have run and the stop to drop once more", n, span)
	}
}

// A fast drop is repeated at the interval, and stop drops once more and
// waits for the pager to end.
func TestPagerDropsAtTheIntervalAndOnStop(t *testing.T) {
	var drops atomic.Int64
	stop := runPager(5*time.Millisecond, 0.1, func() { drops.Add(1) })
	time.Sleep(100 * time.Millisecond)
	before := drops.Load()
	stop()
	after := drops.Load()
	if before < 3 {
		t.Errorf("%d drops in 100 ms at a 5 ms interval, want several", before)
	}
	if after != before+1 {
		t.Errorf("stop dropped %d times, want once", after-before)
	}
	time.Sleep(20 * time.Millisecond)
	if drops.Load() != after {
		t.Error("the pager dropped after stop returned")
	}
}
