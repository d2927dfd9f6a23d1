package npy_test

import (
	"bytes"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
)

func ExampleWriteTo() {
	var buf bytes.Buffer
	if err := npy.WriteTo(&buf, []int{2, 3}, []float32{0, 1, 2, 3, 4, 5}); err != nil {
		panic(err)
	}
	fmt.Printf("%d bytes, header %q...\n", buf.Len(), buf.Bytes()[10:69])

	shape, data, err := npy.ReadFrom(&buf)
	fmt.Println(shape, data, err)
	// Output:
	// 152 bytes, header "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"...
	// [2 3] [0 1 2 3 4 5] <nil>
}
