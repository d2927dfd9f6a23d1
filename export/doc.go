// Package export turns checkpoints into exported model directories and
// reads them back; it is the first step of the data path (checkpoint →
// exported folder → runtime plan → ONNX Runtime sessions → hooks).
//
// An exported directory holds manifest.json, one .onnx graph per stage
// (external data references into one weights file) and that weights file,
// with page-aligned offsets so every session can map it and share its pages.
// The manifest is everything the engine knows about a model: its stages,
// the tensor that carries each hook site, the KV cache, the residual
// boundaries where plans may cut, where each standard weight location lives,
// and the names of its architecture and tokenizer.
//
// Architectures are plugins (Register, in the plugin's init): each reads its
// own checkpoints and builds its stage graphs through a Builder. Resolve
// turns a model reference — an exported folder, a checkpoint folder of any
// registered architecture, a registered name, an https or az:// location —
// into an exported folder, exporting it once into the cache. Import brings
// any ONNX transformer with a hook map (the "onnx" architecture).
package export
