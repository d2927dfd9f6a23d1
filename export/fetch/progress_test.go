package fetch

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 999: "999 B", 1000: "1.0 kB", 12866539: "12.9 MB", 9_700_000_000: "9.7 GB", 3e15: "3000.0 TB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBarRedrawsOneLine(t *testing.T) {
	var buf bytes.Buffer
	b := &bar{w: &buf, start: time.Now().Add(-2 * time.Second)}
	b.draw(progress{done: 500_000_000, total: 1_000_000_000, filesDone: 3, files: 20})
	b.draw(progress{done: 1_000_000_000, total: 1_000_000_000, filesDone: 20, files: 20})
	out := buf.String()
	if strings.Contains(out, "\n") || strings.Count(out, "\r") != 2 {
		t.Fatalf("want two \\r-redraws on one line, got %q", out)
	}
	last := out[strings.LastIndex(out, "\r")+1:]
	for _, want := range []string{"fetch 20/20 files", "1.0 GB / 1.0 GB", "100%", "MB/s"} {
		if !strings.Contains(last, want) {
			t.Errorf("last line %q lacks %q", last, want)
		}
	}

	buf.Reset()
	b = &bar{w: &buf, label: "0.pt", start: time.Now()}
	b.draw(progress{done: 2000, files: 1}) // size not known yet: no total, no percent
	if got := buf.String(); !strings.HasPrefix(got, "\rfetch 0.pt  2.0 kB") || strings.Contains(got, "%") {
		t.Errorf("single-file line without total = %q", got)
	}
	// a shorter line blanks the tail of the longer one before it
	b.width = 80
	buf.Reset()
	b.draw(progress{done: 1, files: 1})
	if got := buf.String(); len(got) < 81 {
		t.Errorf("shorter redraw not padded: %q", got)
	}
}
