package fetch_test

import (
	"context"
	"fmt"
	"log"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
)

// Fetching a model's config and pieces into the per-user cache. (Compiled, not run: it needs
// the network.)
func ExampleCache_FetchAll() {
	ctx := context.Background()
	c, err := fetch.New(fetch.Options{}) // cache in ~/.cache/onnx-tdb, public endpoint
	if err != nil {
		log.Fatal(err)
	}
	model, _ := fetch.Parse("https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/small")
	cfg, err := c.Read(ctx, model.Join("config.json"))
	if err != nil {
		log.Fatal(err) // errors.Is(err, fetch.ErrNotFound), fetch.ErrUnreachable, ...
	}
	fmt.Printf("%s\n", cfg)

	pieces := []fetch.Location{
		model.Join("model_pieces", "tok_embed.weight.pt"),
		model.Join("model_pieces", "pos_embed.weight.pt"),
	}
	paths, err := c.FetchAll(ctx, pieces) // 8 at a time, one progress bar on a terminal
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(paths[0]) // ~/.cache/onnx-tdb/blobs/openaipublic/neuron-explainer/subject-models/gpt2/small/model_pieces/tok_embed.weight.pt
}
