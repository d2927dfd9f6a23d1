// Package progress draws progress bars for long work (downloads, exports,
// benchmarks) on a terminal, through github.com/schollz/progressbar.
//
// It sits beside the data path: commands and the blob cache create a Bar
// for each long step and feed it counts; nothing else depends on it. A Bar
// draws only when its writer is a terminal (or a writer the caller chose
// explicitly, for tests); elsewhere, and for a nil *Bar, every method does
// nothing, so callers need no checks of their own.
package progress
