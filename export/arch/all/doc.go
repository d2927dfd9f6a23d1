// Package all links every built-in architecture plugin into a program:
// import it for its side effect (`import _ ".../export/arch/all"`), as the
// onnx-tdb command does, and every architecture's models resolve, export,
// open and tokenize, their foreign hook names (TransformerLens's) parse, and
// the public SAEs trained on them open by name. A program that needs only some architectures imports
// those plugin packages instead.
package all
