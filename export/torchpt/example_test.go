package torchpt_test

import (
	"fmt"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func ExampleLoadStateDict() {
	sd, err := torchpt.LoadStateDict(filepath.Join(golden.Dir(), "sae", "resid_delta_mlp_topk.layer1.pt"))
	if err != nil {
		fmt.Println(err)
		return
	}
	enc := sd.Tensors["encoder.weight"]
	fmt.Println(enc.DType, enc.Shape, len(enc.F32))
	fmt.Println(sd.Tensors["stats_last_nonzero"].DType)
	fmt.Println(sd.Values["activation"], sd.Values["activation_state_dict"])
	// Output:
	// float32 [512 64] 32768
	// int64
	// TopK map[k:16 postact_fn:ReLU]
}

func ExampleLoadTensor() {
	dir := filepath.Join(golden.Dir(), "model", "model_pieces")
	q, err := torchpt.LoadTensor(filepath.Join(dir, "xf_layers.0.attn.q_proj.weight.pt"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(q.DType, q.Shape, q.Numel())
	// Output: float32 [64 64] 4096
}
