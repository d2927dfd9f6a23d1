package fetch

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

const redrawEvery = 200 * time.Millisecond

// isTerminal reports whether f is a character device (a terminal), without golang.org/x/term.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// drawProgress redraws a one-line bar for t until the returned stop is called. Fetches that end
// within c.progressDelay draw nothing. stop draws the last state and ends the line.
func (c *Cache) drawProgress(t *tracker, label string) (stop func(ok bool)) {
	if c.progress == nil {
		return func(bool) {}
	}
	b := &bar{w: c.progress, label: label, start: time.Now()}
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
				if time.Since(b.start) >= c.progressDelay {
					b.draw(t.snapshot())
				}
			}
		}
	}()
	return func(ok bool) {
		close(quit)
		<-finished
		if ok && time.Since(b.start) >= c.progressDelay {
			b.draw(t.snapshot())
		}
		if b.width > 0 {
			fmt.Fprintln(b.w)
		}
	}
}

// bar is the progress line: "fetch 3/20 files  12.1 MB / 40.0 MB  30%  5.2 MB/s".
type bar struct {
	w     io.Writer
	label string // the file name for a single Fetch; "" for FetchAll
	start time.Time
	width int // length of the last line drawn, to blank its tail
}

func (b *bar) draw(p progress) {
	var s strings.Builder
	s.WriteString("fetch ")
	if b.label != "" {
		s.WriteString(b.label)
	} else {
		fmt.Fprintf(&s, "%d/%d files", p.filesDone, p.files)
	}
	s.WriteString("  " + humanBytes(p.done))
	if p.total > 0 {
		fmt.Fprintf(&s, " / %s  %3d%%", humanBytes(p.total), min(100, p.done*100/p.total))
	}
	if secs := time.Since(b.start).Seconds(); secs > 0 {
		fmt.Fprintf(&s, "  %s/s", humanBytes(int64(float64(p.done)/secs)))
	}
	line := s.String()
	pad := max(0, b.width-len(line))
	fmt.Fprintf(b.w, "\r%s%s", line, strings.Repeat(" ", pad))
	b.width = len(line)
}

// humanBytes writes n in B, kB, MB, GB or TB (powers of 1000), with one decimal above B.
func humanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"kB", "MB", "GB", "TB"}
	f, i := float64(n)/1000, 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
