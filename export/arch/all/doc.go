// Package all links every built-in architecture plugin into a program:
// import it for its side effect (`import _ ".../export/arch/all"`), as the
// onnx-tdb command does, and every architecture's models resolve, export,
// open and tokenize. A program that needs only some architectures imports
// those plugin packages instead.
package all
