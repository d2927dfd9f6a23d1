// Package gpt2 holds GPT-2-small's autoencoder tables and registers them
// with sae: the original Transformer Debugger's five families, upstream
// sparse_autoencoder's v5 TopK families (az://openaipublic), and the
// SAELens releases for GPT-2 small (Hugging Face repositories of SAELens
// folders) that saelens:RELEASE/ID references resolve through.
//
// On the data path it is a lookup table only: sae.Open resolves names
// through what it registered, downloads, converts and runs the SAEs.
// Import it for its side effect (the CLI does).
package gpt2
