package tlnames_test

import (
	"context"
	"fmt"
	"log"
	"math"
	"os"

	"github.com/onnx-tdb/onnx-tdb/export"
	_ "github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/tlnames"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// A TransformerLens name reads TransformerLens's values: blocks.1.hook_resid_pre
// is TDB's resid.torso.post_mlp@0 with its mean over d_model removed (TL's
// default center_writing_weights).
func Example() {
	ctx := context.Background()
	cache, err := os.MkdirTemp("", "tlnames-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(cache)
	dir, err := export.Resolve(ctx, "../../../../testdata/golden/model", export.ResolveOptions{Fetch: fetch.Options{Dir: cache}})
	if err != nil {
		log.Fatal(err)
	}
	m, err := modelctx.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	site, _, err := m.ParseNamedSite("blocks.1.hook_resid_pre")
	if err != nil {
		log.Fatal(err)
	}
	out, err := m.Forward(ctx, [][]int{{464, 2068, 7586}},
		modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{site.Point}, Layers: []int{site.Layer}}))
	if err != nil {
		log.Fatal(err)
	}
	tl, err := m.ReadNamed(out, "blocks.1.hook_resid_pre")
	if err != nil {
		log.Fatal(err)
	}
	D := tl.Shape[2]
	var mean float64
	for _, v := range tl.Data[:D] {
		mean += float64(v) / float64(D)
	}
	fmt.Println("TDB site:", site)
	fmt.Println("TL value centred:", math.Abs(mean) < 1e-5)
	// Output:
	// TDB site: resid.torso.post_mlp@0
	// TL value centred: true
}
