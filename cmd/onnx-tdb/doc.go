// Command onnx-tdb reads, ablates and patches the activations of
// transformers run by ONNX Runtime: export checkpoints, run forward passes
// with hooks, sample, encode with sparse autoencoders, take gradients, and
// benchmark. It is the edge of the program: it parses flags and the
// environment, calls the library, and prints; every analysis it prints is a
// library function Go programs can call too. It links every built-in
// architecture (export/arch/all).
package main
