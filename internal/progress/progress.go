package progress

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Bar is one progress bar. The zero value and nil draw nothing.
type Bar struct {
	pb    *progressbar.ProgressBar
	w     io.Writer
	clear bool
}

// Options for a bar.
type Options struct {
	// Writer receives the bar. Nil: standard error, when it is a terminal.
	// A writer given here is drawn to whatever it is.
	Writer io.Writer
	// Bytes counts bytes (shown as kB/MB/GB with a rate) instead of items.
	Bytes bool
	// Unit names the items counted ("files", "rounds"), when not bytes.
	Unit string
	// Clear erases the bar when it finishes (for a bar between lines of a
	// table), instead of leaving its last state on its own line.
	Clear bool
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// New starts a bar for total units of work (-1: unknown) labelled
// description. It returns nil (a bar that draws nothing) when there is no
// terminal to draw on.
func New(total int64, description string, o Options) *Bar {
	w := o.Writer
	if w == nil {
		if !IsTerminal(os.Stderr) {
			return nil
		}
		w = os.Stderr
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(description),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetPredictTime(true),
	}
	if o.Bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount())
		if o.Unit != "" {
			opts = append(opts, progressbar.OptionSetItsString(o.Unit))
		}
	}
	if o.Clear {
		opts = append(opts, progressbar.OptionClearOnFinish())
	}
	return &Bar{pb: progressbar.NewOptions64(total, opts...), w: w, clear: o.Clear}
}

// Set moves the bar to n units done.
func (b *Bar) Set(n int64) {
	if b != nil {
		b.pb.Set64(n)
	}
}

// Add adds n units done.
func (b *Bar) Add(n int64) {
	if b != nil {
		b.pb.Add64(n)
	}
}

// SetTotal changes the total (when it becomes known).
func (b *Bar) SetTotal(total int64) {
	if b != nil && b.pb.GetMax64() != total {
		b.pb.ChangeMax64(total)
	}
}

// Describe changes the label.
func (b *Bar) Describe(s string) {
	if b != nil {
		b.pb.Describe(s)
	}
}

// Finish draws the bar complete and ends its line.
func (b *Bar) Finish() {
	if b != nil {
		b.pb.Finish()
		if !b.clear {
			io.WriteString(b.w, "\n")
		}
	}
}

// Stop ends the bar's line where it is (the work failed or was cut short).
func (b *Bar) Stop() {
	if b != nil {
		b.pb.Exit()
		io.WriteString(b.w, "\n")
	}
}
