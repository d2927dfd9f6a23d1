package progress_test

import (
	"fmt"
	"io"

	"github.com/onnx-tdb/onnx-tdb/internal/progress"
)

// A bar is fed counts as work goes. With no Writer it draws on standard
// error when that is a terminal, and New returns nil (drawing nothing)
// otherwise; here it draws into io.Discard.
func ExampleNew() {
	files := []string{"a.pt", "b.pt", "c.pt"}
	bar := progress.New(int64(len(files)), "convert", progress.Options{Writer: io.Discard, Unit: "files"})
	for _, f := range files {
		bar.Describe("convert " + f)
		bar.Add(1)
	}
	bar.Finish()
	fmt.Println("converted", len(files))
	// Output: converted 3
}
