package progress

import (
	"bytes"
	"strings"
	"testing"
)

// TestBarDrawsToChosenWriter: a bar given a writer draws to it, ends at
// 100% and ends its line.
func TestBarDrawsToChosenWriter(t *testing.T) {
	var buf bytes.Buffer
	b := New(1000, "export", Options{Writer: &buf, Unit: "tensors"})
	b.Describe("export 3/4")
	b.Set(500)
	b.Add(500)
	b.Finish()
	out := buf.String()
	for _, want := range []string{"export 3/4", "100%", "1000/1000"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar %q lacks %q", out, want)
		}
	}
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("line not ended: %q", out)
	}
}

// TestNilBarDrawsNothing: without a terminal (standard error in tests is
// not one) New returns a bar whose methods do nothing.
func TestNilBarDrawsNothing(t *testing.T) {
	if IsTerminal(nil) {
		t.Fatal("nil is a terminal")
	}
	var b *Bar
	b.Set(1)
	b.Add(1)
	b.SetTotal(3)
	b.Describe("x")
	b.Finish()
	b.Stop()
}

// TestClearedBarLeavesNoLine: a bar with Clear erases itself at Finish and
// writes no newline of its own.
func TestClearedBarLeavesNoLine(t *testing.T) {
	var buf bytes.Buffer
	b := New(10, "bench 1x16", Options{Writer: &buf, Clear: true})
	b.Set(5)
	b.Finish()
	if strings.HasSuffix(buf.String(), "\n") {
		t.Errorf("cleared bar ended with a newline: %q", buf.String())
	}
}
