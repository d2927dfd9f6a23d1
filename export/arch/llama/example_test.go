package llama_test

import (
	"fmt"
	"log"

	"github.com/onnx-tdb/onnx-tdb/export/arch/llama"
)

// A Llama 3-style config.json: grouped-query attention and llama3 rotary
// scaling. The sizes are checked against the limits before any weight is
// read; the rotary frequencies are Hugging Face's (the lowest, 500000^(-62/64),
// divided by the factor 32).
func ExampleParseConfig() {
	cfg, err := llama.ParseConfig([]byte(`{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
  "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
  "vocab_size": 128256, "max_position_embeddings": 131072,
  "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": true,
  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
  "torch_dtype": "bfloat16"}`))
	if err != nil {
		log.Fatal(err)
	}
	inv := cfg.InvFreq()
	fmt.Println("heads", cfg.NHeads, "kv heads", cfg.NKVHeads, "cached width", cfg.KVWidth())
	fmt.Printf("inv_freq[0] %.3g, inv_freq[31] %.3g\n", inv[0], inv[31])

	_, err = llama.ParseConfig([]byte(`{"hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 99999999999}`))
	fmt.Println(err)
	// Output:
	// heads 32 kv heads 8 cached width 512
	// inv_freq[0] 1, inv_freq[31] 9.42e-08
	// invalid llama config: vocab_size = 99999999999
}
