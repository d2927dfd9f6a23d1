package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	ort "github.com/yalue/onnxruntime_go"
)

// The CUDA provider comes two ways. GPU builds of ONNX Runtime (the official
// onnxruntime-linux-x64-gpu packages) have it compiled into the core, which
// loads libonnxruntime_providers_cuda.so itself; CPU cores take it as a plugin
// library (one exporting CreateEpFactories), registered with the environment.
// appendCUDA tries the first and falls back to the second.

// EnvCUDAProvider names the variable that points at a plugin CUDA provider
// library, where it is not libonnxruntime_providers_cuda.so beside the
// ONNX Runtime library.
const EnvCUDAProvider = "ONNX_TDB_CUDA_PROVIDER"

// cudaOptions are the provider options of every CUDA session. TF32 is off:
// float32 matrix products at full precision, as on the CPU (the provider
// turns TF32 on by default, ~1e-3 relative error).
func cudaOptions(id int) map[string]string {
	return map[string]string{"device_id": fmt.Sprint(id), "use_tf32": "0"}
}

// appendCUDA adds the CUDA provider to the session options; plugin says
// it is the plugin library's.
func appendCUDA(so *ort.SessionOptions, id int) (plugin bool, err error) {
	defer func() {
		if err == nil {
			cudaAdded.Store(true)
		}
	}()
	err = appendCUDABuiltIn(so, id)
	if err == nil || !strings.Contains(err.Error(), "not enabled in this build") {
		return false, err
	}
	dev, perr := cudaPluginDevice(id)
	if perr != nil {
		return true, fmt.Errorf("%w: %v", ErrCUDAUnavailable, perr)
	}
	opts := cudaOptions(id)
	delete(opts, "device_id") // the device is the one chosen
	if err := appendEPDevice(so, dev, opts); err != nil {
		// A provider that takes no such options still runs; the golden
		// tests on CUDA check that its float32 results stay exact.
		if err2 := appendEPDevice(so, dev, nil); err2 != nil {
			return true, fmt.Errorf("%w: add the CUDA plugin provider: %v", ErrCUDAUnavailable, err)
		}
	}
	return true, nil
}

// appendCUDABuiltIn adds the CUDA provider of a GPU build.
func appendCUDABuiltIn(so *ort.SessionOptions, id int) error {
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCUDAUnavailable, err)
	}
	defer co.Destroy()
	if err := co.Update(cudaOptions(id)); err != nil {
		return fmt.Errorf("%w: %v", ErrCUDAUnavailable, err)
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		lib, ver := Library()
		return fmt.Errorf("%w: onnxruntime %s at %s could not add the CUDA provider (it needs libonnxruntime_providers_cuda.so beside it, an NVIDIA driver and the CUDA runtime libraries it was built for): %v",
			ErrCUDAUnavailable, ver, lib, err)
	}
	return nil
}

// cudaAdded records that a CUDA provider has been added to some session's
// options, so which kind (built in or plugin) is known.
var cudaAdded atomic.Bool

var cudaPlugin struct {
	sync.Mutex
	done bool
	path string
	err  error
}

// cudaPluginDevice registers the plugin CUDA provider once per process and
// returns CUDA device id as the environment offers it.
func cudaPluginDevice(id int) (*epDevice, error) {
	cudaPlugin.Lock()
	defer cudaPlugin.Unlock()
	if !cudaPlugin.done {
		cudaPlugin.done = true
		cudaPlugin.path, cudaPlugin.err = registerCUDAPlugin()
	}
	if cudaPlugin.err != nil {
		return nil, cudaPlugin.err
	}
	dev, n, err := findEPDevice("cuda", id)
	if err != nil {
		return nil, fmt.Errorf("list devices of %s: %w", cudaPlugin.path, err)
	}
	if dev == nil {
		return nil, fmt.Errorf("CUDA provider %s offers %d GPU devices, no device %d (is the NVIDIA driver there?)", cudaPlugin.path, n, id)
	}
	return dev, nil
}

func registerCUDAPlugin() (string, error) {
	lib, ver := Library()
	path := os.Getenv(EnvCUDAProvider)
	if path == "" {
		path = filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_cuda.so")
	}
	if _, err := os.Stat(path); err != nil {
		return path, fmt.Errorf("onnxruntime %s at %s has no CUDA compiled in, and there is no CUDA provider library at %s: install a GPU build of ONNX Runtime, or set %s to a plugin CUDA provider library of the same version", ver, lib, path, EnvCUDAProvider)
	}
	if err := registerEPLibrary("CUDA", path); err != nil {
		return path, fmt.Errorf("load CUDA provider %s (it needs an NVIDIA driver and the CUDA runtime libraries it was built for on the library path): %w", path, err)
	}
	return path, nil
}

// cudaPluginMemory reports whether CUDA sessions run on the plugin provider,
// and its device's memory.
func cudaPluginMemory(id int) (*epDevice, bool) {
	if !cudaPluginReady() {
		return nil, false
	}
	dev, _, err := findEPDevice("cuda", id)
	if err != nil || dev == nil {
		return nil, false
	}
	return dev, true
}

// EnvAllowSlice names the variable that, set to 1, lets graphs with Slice
// nodes run on a plugin CUDA provider (for a provider without the bug).
const EnvAllowSlice = "ONNX_TDB_CUDA_ALLOW_SLICE"

// checkCUDAPluginOps refuses, with an error instead of a crash, a graph with
// a Slice node on the plugin CUDA provider: ONNX Runtime 1.29's crashes
// (SIGSEGV) in Slice. GPT-2 exports of this version hold none; older exports
// and foreign graphs may.
func checkCUDAPluginOps(o Options, m *onnxpb.ModelProto) error {
	if o.Device != CUDA || os.Getenv(EnvAllowSlice) == "1" {
		return nil
	}
	// Which provider CUDA sessions get is settled when the first CUDA
	// session's options are made; before that, make them once to find out.
	if !cudaAdded.Load() && !cudaPluginReady() {
		so, err := o.sessionOptions("", "")
		if err != nil {
			return err
		}
		so.Destroy()
	}
	if !cudaPluginReady() {
		return nil
	}
	for _, n := range m.GetGraph().GetNode() {
		if n.GetOpType() == "Slice" {
			return fmt.Errorf("%w: the graph has Slice nodes (%s), on which the plugin CUDA provider of ONNX Runtime 1.29 crashes; export the model again with this version (GPT-2 graphs then hold none), or set %s=1 for a provider without the bug", ErrCUDAUnavailable, n.GetName(), EnvAllowSlice)
		}
	}
	return nil
}

// cudaPluginReady reports whether CUDA sessions use the plugin provider.
func cudaPluginReady() bool {
	cudaPlugin.Lock()
	defer cudaPlugin.Unlock()
	return cudaPlugin.done && cudaPlugin.err == nil
}
