// Package vocab is the vocabulary every part of onnx-tdb shares: the hook
// points of the original Transformer Debugger with their shapes in
// dimension terms and their call order (plus the points architectures
// register for what they compute that the original has no name for),
// sites, and the original's component registry — dimensions, node types,
// locations within a layer, activation and weight location types.
//
// It sits under everything on the data path: architecture plugins name the
// tensors of their graphs by these points, the runtime plans by sites, hooks
// are registered at points (package hooks re-exports them), sae splices at
// them, and modelctx's ModelContext answers in these enums.
package vocab
