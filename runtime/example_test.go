package runtime_test

import (
	"context"
	"fmt"
	"log"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// An output kept with RunKeep stays in ONNX Runtime's memory (the GPU's,
// under CUDA) and feeds the next run without a copy, as the sampler does
// with its KV cache.
func ExampleEngine_RunKeep() {
	b := graphs.NewBuilder("double")
	x := b.Input("x", graphs.Float, "N")
	y := b.Op("Mul", "y", []string{x, b.ConstF32("two", nil, 2)})
	b.Output(y, graphs.Float, "N")
	e, err := runtime.NewEngine(&runtime.Graph{Model: b.Model()}, runtime.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()

	res, err := e.RunKeep(ctx, runtime.Request{
		Inputs:  map[string]*runtime.Tensor{"x": {Shape: []int64{3}, F32: []float32{1, 2, 3}}},
		Outputs: []string{"y"},
		Keep:    []string{"y"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer res.Close()
	kept := res.Kept["y"]

	again, err := e.Run(ctx, runtime.Request{Values: map[string]*runtime.Value{"x": kept}, Outputs: []string{"y"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("kept", kept.Shape(), "then", again["y"].F32)
	// Output:
	// kept [3] then [4 8 12]
}
