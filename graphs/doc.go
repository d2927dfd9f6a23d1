// Package graphs builds, cuts and differentiates ONNX graphs in Go. It sits
// between the architectures that describe a model's computation and the
// runtime that runs it: export/ builds stage graphs with its builder, and
// runtime/ asks it to merge stages, expose tensors as outputs, cut a graph at
// named tensors into segments (surgery.go), infer shapes and element types
// (shapes.go, types.go), and build backward graphs (grad.go, vjp*.go).
//
// The generic parts hold no architecture's knowledge; gpt2.go, the GPT-2
// stage graphs, is the one architecture-specific file and is on its way to
// its architecture's own package.
package graphs
