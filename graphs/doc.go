// Package graphs builds, cuts and differentiates ONNX graphs in Go. It sits
// between the architectures that describe a model's computation and the
// runtime that runs it: export/ builds stage graphs with its builder, and
// runtime/ asks it to merge stages, expose tensors as outputs, cut a graph at
// named tensors into segments (surgery.go), keep a LayerNorm whose inner
// tensors are read one fused kernel (readnorm.go), infer shapes and element
// types (shapes.go, types.go), and build backward graphs (grad.go, vjp*.go).
//
// It holds no architecture's knowledge: the architectures' stage graphs
// live in their plugins (export/arch/...), and what it matches (a
// LayerNorm in primitive ops, the ops that end a fusion) is ONNX's and ONNX
// Runtime's vocabulary.
package graphs
