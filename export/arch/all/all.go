package all

import (
	_ "github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"         // GPT-2: TDB and Hugging Face checkpoints
	_ "github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/tlnames" // GPT-2's TransformerLens hook names
	_ "github.com/onnx-tdb/onnx-tdb/export/arch/llama"        // Llama family: Hugging Face LlamaForCausalLM folders
	_ "github.com/onnx-tdb/onnx-tdb/sae/gpt2"                 // GPT-2 small's public SAEs by name (TDB, OpenAI v5, SAELens releases)
)
