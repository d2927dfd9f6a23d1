package harvest

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// bar is a one-line progress display: "pass 1/1  12/40 shards  3,412 tok/s  ETA 1m02s".
type bar struct {
	w         io.Writer
	label     string
	total     int
	perShard  int // tokens per shard (the last may hold fewer)
	start     time.Time
	startDone int
	last      int
	width     int
}

// TerminalProgress returns os.Stderr when it is a terminal, else nil.
func TerminalProgress() io.Writer {
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return os.Stderr
	}
	return nil
}

func newBar(w io.Writer, label string, total, perShard int) *bar {
	return &bar{w: w, label: label, total: total, perShard: perShard, start: time.Now(), startDone: -1, last: -1}
}

func (b *bar) update(done int) {
	if b.w == nil || done == b.last {
		return
	}
	if b.startDone < 0 {
		b.startDone, b.start = done, time.Now() // shards stored before this run do not count towards the rate
	}
	b.last = done
	var s strings.Builder
	fmt.Fprintf(&s, "%s  %d/%d shards", b.label, done, b.total)
	if secs := time.Since(b.start).Seconds(); secs > 0 && done > b.startDone {
		rate := float64(done-b.startDone) / secs
		fmt.Fprintf(&s, "  %.0f tok/s", rate*float64(b.perShard))
		if left := b.total - done; left > 0 {
			fmt.Fprintf(&s, "  ETA %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	line := s.String()
	fmt.Fprintf(b.w, "\r%s%s", line, strings.Repeat(" ", max(0, b.width-len(line))))
	b.width = len(line)
}

func (b *bar) finish() {
	if b.w != nil && b.width > 0 {
		fmt.Fprintln(b.w)
	}
}
