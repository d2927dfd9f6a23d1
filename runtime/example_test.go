package runtime_test

import (
	"context"
	"fmt"
	"log"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/hooks"
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

// Captured sites come back as views of ONNX Runtime's memory, owned by the
// Result until Close; nothing is copied into Go.
func ExampleRequest_capture() {
	e, site := affineEngine() // y = 2(x+1), with h = x+1 the site mlp.pre_act@0
	defer e.Close()
	res, err := e.RunKeep(context.Background(), runtime.Request{
		Inputs:  map[string]*runtime.Tensor{"x": {Shape: []int64{1, 1, 2}, F32: []float32{1, 2}}},
		Outputs: []string{"y"},
		Capture: []hooks.Site{site},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(site, res.Captured[site].Data, "y", res.Tensors["y"].F32)
	res.Close() // the view's memory goes back to ONNX Runtime
	// Output:
	// mlp.pre_act@0 [2 3] y [4 6]
}

// With Alloc, ONNX Runtime writes a captured tensor whose shape the run
// knows beforehand (declared here, with T bound by the input) straight into
// the caller's Go memory, which stays the caller's after Close.
func ExampleRequest_alloc() {
	e, site := affineEngine() // y = 2(x+1), with h = x+1 the site mlp.pre_act@0
	defer e.Close()
	const T = 1024 // outputs under 4 KiB are not given Go memory
	in := make([]float32, 2*T)
	var mine []float32
	res, err := e.RunKeep(context.Background(), runtime.Request{
		Inputs:  map[string]*runtime.Tensor{"x": {Shape: []int64{1, T, 2}, F32: in}},
		Outputs: []string{"y"},
		Capture: []hooks.Site{site},
		Alloc: func(n int) []float32 {
			mine = make([]float32, n) // or memory kept from an earlier run
			return mine
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	written := res.InGo(site)
	res.Close()
	got := res.Captured[site] // still there: the memory is the caller's
	fmt.Println("in Go:", written, "same memory:", &got.Data[0] == &mine[0], "values:", got.Data[:2])
	// Output:
	// in Go: true same memory: true values: [1 1]
}

// With Free as well, a run writes the points only its hooks read into the
// caller's memory and gives each back once its hooks are done: a pool of
// buffers then serves every run's reads, and ONNX Runtime's arena holds none.
func ExampleRequest_free() {
	e, site := affineEngine()
	defer e.Close()
	const T = 1024
	in := make([]float32, 2*T)
	var pool [][]float32 // a one-size pool, enough here
	made := 0
	h := hooks.New()
	h.Observe(site.Point, func(_ *hooks.Context, t *hooks.Tensor) error {
		fmt.Println("observed", t.Shape, t.Data[:2])
		return nil
	})
	for range 3 {
		_, err := e.Run(context.Background(), runtime.Request{
			Inputs:  map[string]*runtime.Tensor{"x": {Shape: []int64{1, T, 2}, F32: in}},
			Outputs: []string{"y"},
			Hooks:   hooks.Snapshot(h),
			Alloc: func(n int) []float32 {
				if len(pool) > 0 {
					b := pool[len(pool)-1]
					pool = pool[:len(pool)-1]
					return b
				}
				made++
				return make([]float32, n)
			},
			Free: func(bufs ...[]float32) { pool = append(pool, bufs...) },
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("buffers made:", made, "pooled after the runs:", len(pool))
	// Output:
	// observed [1 1024 2] [1 1]
	// observed [1 1024 2] [1 1]
	// observed [1 1024 2] [1 1]
	// buffers made: 1 pooled after the runs: 1
}

// affineEngine is an engine over y = 2(x+1) for x of shape [B,T,2], whose
// h = x+1 (declared [B,T,2]) is the hook site it returns.
func affineEngine() (*runtime.Engine, hooks.Site) {
	b := graphs.NewBuilder("affine")
	x := b.Input("x", graphs.Float, "B", "T", "2")
	h := b.Type(b.Op("Add", "h", []string{x, b.ConstF32("one", nil, 1)}), graphs.Float, "B", "T", "2")
	y := b.Op("Mul", "y", []string{h, b.ConstF32("two", nil, 2)})
	b.Output(y, graphs.Float, "B", "T", "2")
	site := hooks.Site{Point: hooks.MLPPreAct, Layer: 0}
	g := &runtime.Graph{Model: b.Model(), Points: map[hooks.Site]runtime.PointRef{site: {Tensor: h}}, NLayers: 1}
	e, err := runtime.NewEngine(g, runtime.Options{})
	if err != nil {
		log.Fatal(err)
	}
	return e, site
}

// An execution provider is data: a name and its options.
func ExampleProvider() {
	for _, s := range []string{"cpu", "cuda:1"} {
		p, err := runtime.ParseProvider(s)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(p, p.Name, p.Options)
	}
	// Output:
	// cpu CPU map[]
	// cuda:1 CUDA map[device_id:1 use_tf32:0]
}
