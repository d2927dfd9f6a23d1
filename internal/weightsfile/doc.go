// Package weightsfile writes the weights.bin of exported models and
// converted SAEs: tensors back to back at page-aligned offsets, so ONNX
// Runtime can map the file and a session touches only its tensors' pages.
package weightsfile
