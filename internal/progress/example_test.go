package progress_test

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/internal/progress"
)

// A bar is fed counts as work goes; where standard error is not a terminal
// (as under go test) New returns nil, which draws nothing.
func ExampleNew() {
	files := []string{"a.pt", "b.pt", "c.pt"}
	bar := progress.New(int64(len(files)), "convert", progress.Options{Unit: "files"})
	for _, f := range files {
		bar.Describe("convert " + f)
		bar.Add(1)
	}
	bar.Finish()
	fmt.Println(bar == nil)
	// Output: true
}
