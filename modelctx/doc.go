// Package modelctx is the face users see, the last step of the data path:
// the Transformer type (Forward with padding, hook points read and written,
// sampling with a KV cache, Backward) over an exported model directory, and
// the original's ModelContext interface (dimensions, weights by location,
// tokenizer).
//
// It knows no architecture: what differs between models (points, cache,
// residual boundaries, weight locations, the MLP output layer, the
// tokenizer's name) comes from the manifest the architecture's plugin
// wrote, and the architecture must be registered (import its plugin, or
// export/arch/all) for Open to accept the model.
package modelctx
