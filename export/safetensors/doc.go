// Package safetensors reads the safetensors format that Hugging Face
// checkpoints and SAELens folders ship their tensors in: an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian data.
//
// On the data path it sits beside export/torchpt: architecture plugins read
// checkpoint tensors through it (widened to float32) before export writes
// them into an exported model's weights file, and sae reads SAE weights
// through it. Headers are untrusted input: every offset, shape and size is
// checked against the file before anything is allocated.
package safetensors
