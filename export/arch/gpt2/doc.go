// Package gpt2 is the GPT-2 architecture plugin, registered as "gpt2": it
// reads TDB checkpoint folders (config.json + model_pieces/*.pt, local or
// downloaded from the public blob locations, also by the names
// gpt2-small|medium|large|xl) and Hugging Face GPT2LMHeadModel folders
// (config.json + safetensors), makes random GPT-2-shaped weights for
// benchmarks, and builds the stage graphs — embedding, one per layer, final
// LayerNorm and unembedding — with every one of TDB's hook points a named
// tensor, TDB's exact maths (float32 LayerNorm, tanh GELU, the explicit
// softmax switch, positions from the pad mask) and a KV cache. Its
// tokenizer (package bpe) is registered as "gpt2".
//
// On the data path it is export's first step for GPT-2 models: checkpoint
// tensors in, weights file, stage graphs and manifest fields out.
package gpt2
