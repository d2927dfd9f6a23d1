// Package ortenv reads the ONNX_TDB_* environment variables that configure
// ONNX Runtime into runtime.Options. It sits at the edge of the data path:
// the CLI (and test helpers, which honour the same variables) call it once,
// and the runtime package itself never reads the environment for these
// settings.
package ortenv
