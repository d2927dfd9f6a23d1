// Package sae runs sparse autoencoders and transcoders on ONNX Runtime and
// splices them into a forward pass. It reads the original Transformer
// Debugger's torch state dicts (.pt), upstream sparse_autoencoder's v5 TopK
// state dicts (their inputs LN-normalised), and SAELens folders (cfg.json +
// sae_weights.safetensors: standard, topk, jumprelu, gated, transcoder,
// skip_transcoder and jumprelu_transcoder, with their input
// normalisations), converts each once into a cached folder (an ONNX graph
// for encode and decode over a page-aligned weights file), and splices it
// in at its site with the hook points sae.latents, sae.reconstruction and
// sae.error, as the original's AutoencoderHooks and SAELens's error term.
//
// On the data path it sits beside modelctx: a splice is a hook at the
// autoencoder's site (a transcoder: at its input and output sites); a
// SiteMap maps the model's values there into the coordinates the
// autoencoder was trained in (TransformerLens's, for SAELens SAEs) and
// back. Architecture packages supply the Resolver of foreign site names
// and register their families and SAELens releases.
//
// TDB's Autoencoder computes, with no input normalisation:
//
//	encode(x) = act((x − pre_bias) · encoderᵀ + latent_bias)
//	decode(z) = z · decoderᵀ + pre_bias
//
// SAELens SAEs add their normalisation around this (norm.go) and their
// activations (JumpReLU, Gated) in the graph. The encoder's weights are
// read only by the encode session and the decoder's only by the decode
// session, so a large autoencoder (2 × 32768 × 3072 floats for a 3072-wide
// MLP) is held once.
//
// AutoencoderContext and MultiAutoencoderContext are the original's
// per-layer families of autoencoders; Families lists the registered ones,
// fetched from az://openaipublic/sparse-autoencoder.
package sae
