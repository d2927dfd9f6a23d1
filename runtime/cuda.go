package runtime

import (
	"errors"
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

// appendProvider adds o's execution provider to the session options:
// nothing for the CPU (ONNX Runtime's default), the CUDA provider built in
// or as a plugin, and any other provider by name with its options. plugin
// says the CUDA provider is the plugin library's.
func appendProvider(so *ort.SessionOptions, o Options) (plugin bool, err error) {
	p := o.Provider
	switch {
	case p.IsCPU():
		return false, nil
	case p.IsCUDA():
		return appendCUDA(so, p, o.CUDAProviderLibrary)
	}
	if err := so.AppendExecutionProvider(p.Name, p.options()); err != nil {
		return false, fmt.Errorf("%w: add execution provider %s: %v", ErrProviderUnavailable, p.Name, err)
	}
	return false, nil
}

// ErrProviderUnavailable is returned when a provider other than the CPU
// and CUDA cannot be added to a session.
var ErrProviderUnavailable = errors.New("execution provider unavailable")

// appendCUDA adds the CUDA provider to the session options; plugin says
// it is the plugin library's.
func appendCUDA(so *ort.SessionOptions, p Provider, pluginLib string) (plugin bool, err error) {
	defer func() {
		if err == nil {
			cudaAdded.Store(true)
		} else {
			err = withCUDAHint(err)
		}
	}()
	err = appendCUDABuiltIn(so, p)
	if err == nil || !strings.Contains(err.Error(), "not enabled in this build") {
		return false, err
	}
	dev, perr := cudaPluginDevice(p.DeviceID(), pluginLib)
	if perr != nil {
		return true, fmt.Errorf("%w: %v", ErrCUDAUnavailable, perr)
	}
	opts := p.options("device_id") // the device is the one chosen
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
func appendCUDABuiltIn(so *ort.SessionOptions, p Provider) error {
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCUDAUnavailable, err)
	}
	defer co.Destroy()
	if err := co.Update(p.options()); err != nil {
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
func cudaPluginDevice(id int, lib string) (*epDevice, error) {
	cudaPlugin.Lock()
	defer cudaPlugin.Unlock()
	if !cudaPlugin.done {
		cudaPlugin.done = true
		cudaPlugin.path, cudaPlugin.err = registerCUDAPlugin(lib)
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

func registerCUDAPlugin(path string) (string, error) {
	lib, ver := Library()
	if path == "" {
		path = filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_cuda.so")
	}
	if _, err := os.Stat(path); err != nil {
		return path, fmt.Errorf("onnxruntime %s at %s has no CUDA compiled in, and there is no CUDA provider library at %s", ver, lib, path)
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

// checkCUDAPluginOps refuses, with an error instead of a crash, a graph with
// a Slice node on the plugin CUDA provider: ONNX Runtime 1.29's crashes
// (SIGSEGV) in Slice. The engine's own exports of this version hold none;
// older exports and foreign graphs may.
func checkCUDAPluginOps(o Options, m *onnxpb.ModelProto) error {
	if !o.Provider.IsCUDA() || o.AllowSlice {
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
			return fmt.Errorf("%w: the graph has Slice nodes (%s), on which the plugin CUDA provider of ONNX Runtime 1.29 crashes; export the model again with this version (its graphs then hold none), or allow Slice (runtime option AllowSlice) for a provider without the bug", ErrCUDAUnavailable, n.GetName())
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
