package ortenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// The variables, and the option each sets.
const (
	Threads      = "ONNX_TDB_THREADS"          // Process.Threads: size of the shared pool
	Spin         = "ONNX_TDB_SPIN"             // 0: Process.NoSpin
	LogLevel     = "ONNX_TDB_ORT_LOG"          // Process.LogLevel
	Telemetry    = "ONNX_TDB_TELEMETRY"        // 1: Process.Telemetry
	GraphOpt     = "ONNX_TDB_GRAPH_OPT"        // Options.GraphOpt
	StageCuts    = "ONNX_TDB_STAGE_CUTS"       // 1: Options.StageCuts
	ReadMemory   = "ONNX_TDB_READ_MEMORY"      // Options.ReadMemory, in MiB (negative: cut at every boundary)
	CUDAProvider = "ONNX_TDB_CUDA_PROVIDER"    // Options.CUDAProviderLibrary
	AllowSlice   = "ONNX_TDB_CUDA_ALLOW_SLICE" // 1: Options.AllowSlice
	ProfileDir   = "ONNX_TDB_PROFILE_DIR"      // Options.ProfileDir: a JSON profile per session
	OptimizedDir = "ONNX_TDB_OPTIMIZED_DIR"    // Options.OptimizedDir: each session's optimised graph
)

// Options returns the runtime options the variables give, looked up with
// get (os.Getenv in use; a map in tests). Unset variables leave the zero
// value; a malformed one is an error naming it.
func Options(get func(string) string) (runtime.Options, error) {
	var o runtime.Options
	if v := get(Threads); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, fmt.Errorf("%s=%q: want a thread count", Threads, v)
		}
		o.Process.Threads = n
	}
	var err error
	if o.Process.NoSpin, err = flag(get, Spin, true); err != nil {
		return o, err
	}
	o.Process.LogLevel = strings.ToLower(get(LogLevel))
	if o.Process.Telemetry, err = flag(get, Telemetry, false); err != nil {
		return o, err
	}
	if v := get(GraphOpt); v != "" {
		if o.GraphOpt, err = runtime.ParseGraphOpt(v); err != nil {
			return o, fmt.Errorf("%s: %w", GraphOpt, err)
		}
	}
	if o.StageCuts, err = flag(get, StageCuts, false); err != nil {
		return o, err
	}
	if v := get(ReadMemory); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > 1<<30 || n < -1<<30 {
			return o, fmt.Errorf("%s=%q: want MiB (negative: cut at every boundary)", ReadMemory, v)
		}
		o.ReadMemory = n << 20
	}
	if o.AllowSlice, err = flag(get, AllowSlice, false); err != nil {
		return o, err
	}
	o.CUDAProviderLibrary = get(CUDAProvider)
	o.ProfileDir = get(ProfileDir)
	o.OptimizedDir = get(OptimizedDir)
	return o, nil
}

// FromEnviron is Options over the process environment.
func FromEnviron() (runtime.Options, error) { return Options(os.Getenv) }

// ApplyProcessDefaults makes the variables' process settings the runtime's
// defaults (for test binaries, which honour ONNX_TDB_THREADS and
// ONNX_TDB_SPIN as the CLI does).
func ApplyProcessDefaults() error {
	o, err := FromEnviron()
	if err != nil {
		return err
	}
	return runtime.SetProcessDefaults(o.Process)
}

// flag reads a 0/1 variable; it reports whether the value is the one that
// turns the setting on (off: 0 sets it; else 1 does). Unset is false.
func flag(get func(string) string, name string, off bool) (bool, error) {
	switch v := get(name); v {
	case "":
		return false, nil
	case "0", "1":
		return (v == "0") == off, nil
	default:
		return false, fmt.Errorf("%s=%q: want 0 or 1", name, v)
	}
}
