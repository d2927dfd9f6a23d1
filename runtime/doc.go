// Package runtime runs ONNX graphs with hooks on ONNX Runtime. It is the
// last step of the data path: export/ writes a model's graphs and weights,
// modelctx/ opens them and turns tokens into inputs, and this package runs
// the graph and hands hooked tensors to hooks/ between graph segments.
//
// What it owns:
//
//   - Finding and loading the ONNX Runtime shared library (FindLibrary,
//     CheckLibrary, Init/Start) and its one process-wide environment: a
//     shared thread pool, the log level and telemetry (Process).
//   - Session options as data (Options, with the execution Provider as a
//     name and its options; CPUProvider, CUDAProvider), including the CUDA
//     provider built into GPU cores or loaded as a plugin library.
//   - The Engine: for each set of hooked sites a plan (the graph cut at the
//     points hooks may write, read points exposed as outputs, each segment
//     one session; reads of many layers cut only as often as
//     Options.ReadMemory needs, readcuts.go; plans that are cut also cut
//     before the unembedding, Graph.Head), built once and cached, their sessions
//     shared by content between plans (sessions.go); forward
//     runs that call the hooks between segments; backward plans over
//     graphs/' autodiff.
//   - Weights mapped once and shared by every session (AddInitializer and one
//     prepacked-weights container), through a small C shim (ortc.c, ortc.h)
//     over the parts of the C API onnxruntime_go does not expose.
//
// The package reads no configuration from the environment: callers (the CLI,
// through internal/ortenv) fill Options. The one exception is the search for
// the shared library itself (FindLibrary), which follows the conventions a
// user of any native library expects: $ONNXRUNTIME_LIB, the per-user cache
// under $XDG_CACHE_HOME where `make ort` and `make ort-gpu` install, and
// $LD_LIBRARY_PATH; it runs before any Options exist, and the dynamic loader
// reads the same variables anyway.
package runtime
