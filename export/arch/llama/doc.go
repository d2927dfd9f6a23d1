// Package llama is the native Llama-family decoder architecture: it reads a
// Hugging Face LlamaForCausalLM folder (config.json plus model.safetensors or
// its shards), checks the configuration against sane limits, and writes an
// exported model directory whose stage graphs (embed, one per layer, final)
// carry every hook point as a named tensor.
//
// On the data path it sits where export turns checkpoints into exported
// directories: checkpoint tensors come in through export/safetensors (widened
// to float32), go into the exported folder's weights file, and the stage
// graphs built here are what modelctx opens and runtime cuts at hook points.
//
// The maths is the Hugging Face model's: RMSNorm with a weight and no bias,
// rotary embeddings in the rotate-half convention (rope_theta, and the linear
// and llama3 frequency scalings), grouped-query attention, a SwiGLU MLP and an
// optionally tied unembedding. Positions come from the pad mask, so a
// left-padded batch of prompts gives each row what it would give alone.
//
// Hook points use TDB's vocabulary where the meaning carries over; the
// RMSNorm's scale is sqrt(mean(x^2)+eps) and its post_scale is x/scale before
// the weight; there is no post_mean_subtraction. attn.q and attn.k are taken
// after the rotary embedding, each scaled by d_head^-1/4, so that qk_logits is
// q.k; attn.k and attn.v have the key-value head count. mlp.pre_act is the
// gate projection and mlp.post_act silu(gate) times up, the input of
// down_proj. The up projection is a point of this architecture's own,
// mlp.up (MLPUp). The common names of hook maps (resid_pre, mlp_hidden, ...)
// are aliases of the sites.
//
// The graphs hold no Slice (ONNX Runtime's plugin CUDA provider crashes in
// it): rotate-half is a product with a constant matrix of zeros and ones,
// the grouped heads are repeated with Expand, and every op has a gradient
// rule in graphs, so Backward works on the model as on GPT-2.
package llama
