package fetch

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressDrawsToChosenWriter: a slow fetch shows a bar with its label,
// and the line is ended when it stops.
func TestProgressDrawsToChosenWriter(t *testing.T) {
	var buf bytes.Buffer
	c := &Cache{progress: &buf, progressDelay: 0}
	tr := &tracker{}
	tr.total, tr.files, tr.sized = 1_000_000, 20, true
	stop := c.drawProgress(tr, "")
	time.Sleep(3 * redrawEvery)
	tr.mu.Lock()
	tr.doneBytes, tr.filesDone = 1_000_000, 20
	tr.mu.Unlock()
	stop(true)
	out := buf.String()
	for _, want := range []string{"fetch 20/20 files", "100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar %q lacks %q", out, want)
		}
	}
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("line not ended: %q", out)
	}
}

// TestProgressQuietWhenQuick: fetches that end within the delay draw nothing.
func TestProgressQuietWhenQuick(t *testing.T) {
	var buf bytes.Buffer
	c := &Cache{progress: &buf, progressDelay: time.Hour}
	stop := c.drawProgress(&tracker{}, "0.pt")
	stop(true)
	if buf.Len() != 0 {
		t.Errorf("drew %q", buf.String())
	}
}

// TestProgressUnknownSize: a bar whose total is not known yet still draws
// and ends cleanly.
func TestProgressUnknownSize(t *testing.T) {
	var buf bytes.Buffer
	c := &Cache{progress: &buf}
	tr := &tracker{files: 2}
	stop := c.drawProgress(tr, "0.pt")
	time.Sleep(2 * redrawEvery)
	tr.mu.Lock()
	tr.doneBytes, tr.filesDone = 4096, 2
	tr.mu.Unlock()
	stop(true)
	if out := buf.String(); !strings.Contains(out, "fetch 0.pt") || !strings.HasSuffix(out, "\n") {
		t.Errorf("bar %q", out)
	}
}
