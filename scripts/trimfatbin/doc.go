// Command trimfatbin keeps one GPU architecture's kernels in a CUDA shared
// library (an ONNX Runtime CUDA provider), so that it compresses to a size a
// small transfer can carry: every fat binary in the .nv_fatbin section keeps
// its entry for the chosen SM version (moved to the front, the header's size
// shortened to it) and the rest of its bytes are zeroed. Fat binaries with no
// entry for that version are left as they are. A development aid for running
// the CUDA tests on a lent GPU machine, not part of onnx-tdb.
//
//	go run ./scripts/trimfatbin -sm 90 libonnxruntime_providers_cuda.so trimmed.so
package main
