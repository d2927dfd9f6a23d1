package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"
)

// bindOnCPU makes CPU engines run segments through IO bindings too, with
// the outputs a CUDA engine would keep on the GPU bound to CPU memory
// (tests use it to exercise the CUDA engine's placement without a GPU).
var bindOnCPU = false

// placesOnDevice reports whether plans may leave outputs in device memory
// (see deviceMemory): what the plan lookup asks on every run, without
// querying the provider.
func (o Options) placesOnDevice() bool { return o.Provider.IsCUDA() || bindOnCPU }

// deviceMemory is where segment outputs read only by later segments are
// kept; ok is false where outputs all come back to the host.
func (o Options) deviceMemory() (dm deviceMemory, ok bool) {
	switch {
	case o.Provider.IsCUDA():
		if dev, plugin := cudaPluginMemory(o.Provider.DeviceID()); plugin {
			// A provider that works in CPU memory has nothing to keep.
			return deviceMemory{info: dev.mem}, dev.mem != nil
		}
		return deviceMemory{name: "Cuda", id: o.Provider.DeviceID()}, true
	case bindOnCPU:
		return deviceMemory{name: "Cpu"}, true
	}
	return deviceMemory{}, false
}

// sessionsCreated counts ORT sessions made by this process (tests use it to
// show plans are cached).
var sessionsCreated atomic.Int64

// SessionsCreated is the number of ORT sessions this process has created.
func SessionsCreated() int64 { return sessionsCreated.Load() }

func (o Options) sessionOptions(dir string, tag string) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	fail := func(err error) (*ort.SessionOptions, error) {
		so.Destroy()
		return nil, err
	}
	if o.Threads > 0 {
		if err := so.SetIntraOpNumThreads(o.threads()); err != nil {
			return fail(err)
		}
		if err := so.SetInterOpNumThreads(1); err != nil {
			return fail(err)
		}
	}
	spin := "0"
	if o.Spin {
		spin = "1"
	}
	for k, v := range map[string]string{
		"session.intra_op.allow_spinning": spin,
		"session.inter_op.allow_spinning": spin,
		"session.use_env_allocators":      "1",
	} {
		if err := so.AddSessionConfigEntry(k, v); err != nil {
			return fail(fmt.Errorf("session config %s: %w", k, err))
		}
	}
	if dir != "" {
		if err := so.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", dir); err != nil {
			return fail(fmt.Errorf("external data folder: %w", err))
		}
	}
	if o.NoPrepack {
		if err := so.AddSessionConfigEntry("session.disable_prepacking", "1"); err != nil {
			return fail(err)
		}
	}
	if o.noMemPattern {
		if err := so.SetMemPattern(false); err != nil {
			return fail(fmt.Errorf("memory pattern: %w", err))
		}
	}
	level, err := o.optLevel()
	if err != nil {
		return fail(err)
	}
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return fail(err)
	}
	if o.OptimizedDir != "" && tag != "" {
		if err := os.MkdirAll(o.OptimizedDir, 0o755); err != nil {
			return fail(err)
		}
		if err := so.SetOptimizedModelFilePath(filepath.Join(o.OptimizedDir, tag+".onnx")); err != nil {
			return fail(err)
		}
	}
	if o.ProfileDir != "" && tag != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return fail(err)
		}
		if err := so.EnableProfiling(filepath.Join(o.ProfileDir, tag)); err != nil {
			return fail(err)
		}
	}
	plugin, err := appendProvider(so, o)
	if err != nil {
		return fail(err)
	}
	// The plugin CUDA provider of ONNX Runtime 1.29 crashes (SIGSEGV) on
	// transformer graphs optimised at the extended level or above (seen on
	// an H200; basic runs every golden test): cap it unless the user chose
	// a level.
	if plugin && o.GraphOpt == "" && !o.DisableOptimizations {
		if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableBasic); err != nil {
			return fail(err)
		}
	}
	return so, nil
}

// session is one ORT session over one graph segment.
type session struct {
	cs      *csession
	inputs  []string
	outputs []string
}

// newSession creates a session over a serialised segment. Its options come
// from onnxruntime_go (threads, providers); the shim adds the shared weights
// and creates it with the engine's prepacked-weights container.
func newSession(model []byte, inits []string, inputs, outputs []string, dir, tag string, o Options, ws *weightStore, pp *prepacked) (*session, error) {
	so, err := o.sessionOptions(dir, tag)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	if o.Threads <= 0 {
		if err := disablePerSessionThreads(so); err != nil {
			return nil, fmt.Errorf("create session %s: %w", tag, err)
		}
	}
	if ws != nil {
		for _, name := range inits {
			if v, ok := ws.values[name]; ok {
				if err := addInitializer(so, name, v); err != nil {
					return nil, fmt.Errorf("create session %s: shared weight %s: %w", tag, name, err)
				}
			}
		}
	}
	cs, err := createSession(model, so, pp)
	if err != nil {
		if o.Provider.IsCUDA() && strings.Contains(strings.ToLower(err.Error()), "cuda") {
			return nil, withCUDAHint(fmt.Errorf("%w: %v", ErrCUDAUnavailable, err))
		}
		return nil, fmt.Errorf("create session %s: %w", tag, err)
	}
	cs.setNames(inputs, outputs)
	sessionsCreated.Add(1)
	return &session{cs: cs, inputs: inputs, outputs: outputs}, nil
}

func (s *session) close() error {
	if s == nil || s.cs == nil {
		return nil
	}
	s.cs.release()
	s.cs = nil
	return nil
}
