package fetch

import (
	"fmt"
	"os"
	"time"

	bars "github.com/onnx-tdb/onnx-tdb/internal/progress"
)

const redrawEvery = 200 * time.Millisecond

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool { return bars.IsTerminal(f) }

// drawProgress shows a bar for t until the returned stop is called. Fetches that end within
// c.progressDelay draw nothing. stop draws the last state and ends the line.
func (c *Cache) drawProgress(t *tracker, label string) (stop func(ok bool)) {
	if c.progress == nil {
		return func(bool) {}
	}
	start := time.Now()
	var bar *bars.Bar
	update := func() {
		p := t.snapshot()
		if bar == nil {
			total := p.total
			if total <= 0 {
				total = -1 // not known yet
			}
			bar = bars.New(total, "", bars.Options{Writer: c.progress, Bytes: true})
		}
		bar.Describe(describe(label, p))
		if p.total > 0 {
			bar.SetTotal(p.total)
		}
		bar.Set(p.done)
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(redrawEvery)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				if time.Since(start) >= c.progressDelay {
					update()
				}
			}
		}
	}()
	return func(ok bool) {
		close(quit)
		<-finished
		if ok && time.Since(start) >= c.progressDelay {
			update()
			if p := t.snapshot(); p.total <= 0 && p.done > 0 {
				bar.SetTotal(p.done)
			}
			bar.Finish()
		} else {
			bar.Stop()
		}
	}
}

// describe labels the bar: "fetch 0.pt", or "fetch 3/20 files".
func describe(label string, p progress) string {
	if label != "" {
		return "fetch " + label
	}
	return fmt.Sprintf("fetch %d/%d files", p.filesDone, p.files)
}
