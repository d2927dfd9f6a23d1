package all

import (
	_ "github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"  // GPT-2: TDB and Hugging Face checkpoints
	_ "github.com/onnx-tdb/onnx-tdb/export/arch/llama" // Llama family: Hugging Face LlamaForCausalLM folders
)
