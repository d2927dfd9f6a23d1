// Package torchpt reads and writes PyTorch torch.save files without Python.
//
// It is how onnx-tdb gets at the original Transformer Debugger weights: the
// checkpoint pieces (model_pieces/<key>.pt, one tensor per file) and the sparse
// autoencoder state dicts (one dict of tensors, strings and small nested dicts
// per file). Both the zip format that torch >= 1.6 writes and the older
// "legacy" pickle-stream format are read, including views: a tensor saved as
// a strided view of a larger storage (the q/k/v pieces of TDB's GPT-2
// converter are such views) is gathered as storage[offset + Σ idx_i*stride_i].
//
// export/ reads model pieces with LoadTensor and sae/ reads SAE files with
// LoadStateDict; Save and SaveStateDict write files torch.load reads, for
// tests and generated fixtures.
//
// The pickle part of a file is decoded with gopickle's unpickler, after a
// scan that checks every length field against the bytes present. Storage
// bytes are read in bulk, straight from the file (torch stores zip entries
// uncompressed; their CRC is not checked, the pickle's is), into the result
// when the view is contiguous float32 or int64, otherwise into one buffer
// that is then gathered. Loading is safe for concurrent use.
//
// Malformed input never panics through this API: errors wrap ErrCorrupt or
// ErrUnsupported and name the file.
package torchpt
