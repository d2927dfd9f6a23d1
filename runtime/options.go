package runtime

import (
	"errors"
	"fmt"
	"maps"
	goruntime "runtime"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Device names a kind of execution provider in the short form users type
// ("cpu", "cuda"); Provider is what sessions are configured with.
type Device string

// Devices.
const (
	CPU  Device = "cpu"
	CUDA Device = "cuda"
)

// Provider returns the execution provider of device d with ordinal id.
func (d Device) Provider(id int) Provider {
	if d == CUDA {
		return CUDAProvider(id)
	}
	return CPUProvider()
}

// ErrCUDAUnavailable is returned when the CUDA provider cannot be used: the
// library has no CUDA provider, or no GPU or CUDA runtime is present.
var ErrCUDAUnavailable = errors.New("cuda execution provider unavailable")

// ErrOption is returned for an option value the runtime does not know.
var ErrOption = errors.New("bad runtime option")

// ParseDevice parses "cpu" or "cuda" (also "cuda:N").
func ParseDevice(s string) (Device, int, error) {
	switch {
	case s == "" || s == "cpu":
		return CPU, 0, nil
	case s == "cuda" || s == "gpu":
		return CUDA, 0, nil
	case strings.HasPrefix(s, "cuda:"):
		id, err := strconv.Atoi(strings.TrimPrefix(s, "cuda:"))
		if err != nil || id < 0 {
			return "", 0, fmt.Errorf("bad device %q", s)
		}
		return CUDA, id, nil
	}
	return "", 0, fmt.Errorf("unknown device %q (want cpu or cuda[:N])", s)
}

// ParseProvider parses a device as ParseDevice does into its provider.
func ParseProvider(s string) (Provider, error) {
	d, id, err := ParseDevice(s)
	if err != nil {
		return Provider{}, err
	}
	return d.Provider(id), nil
}

// Provider describes an execution provider as data: ONNX Runtime's short
// name for it ("CPU", "CUDA", or any other name the library appends by name,
// such as "XNNPACK") and its provider options. The zero Provider is the CPU.
type Provider struct {
	Name    string
	Options map[string]string
}

// Provider names with handling of their own.
const (
	ProviderCPU  = "CPU"
	ProviderCUDA = "CUDA"
)

// CPUProvider is ONNX Runtime's default CPU provider.
func CPUProvider() Provider { return Provider{Name: ProviderCPU} }

// CUDAProvider is the CUDA provider on device id. TF32 is off: float32
// matrix products at full precision, as on the CPU (the provider turns TF32
// on by default, ~1e-3 relative error).
func CUDAProvider(id int) Provider {
	return Provider{Name: ProviderCUDA, Options: map[string]string{"device_id": strconv.Itoa(id), "use_tf32": "0"}}
}

// IsCPU reports whether p is the CPU provider (the zero Provider included).
func (p Provider) IsCPU() bool { return p.Name == "" || strings.EqualFold(p.Name, ProviderCPU) }

// IsCUDA reports whether p is the CUDA provider.
func (p Provider) IsCUDA() bool { return strings.EqualFold(p.Name, ProviderCUDA) }

// DeviceID is the provider's device ordinal (its device_id option, else 0).
func (p Provider) DeviceID() int {
	id, err := strconv.Atoi(p.Options["device_id"])
	if err != nil {
		return 0
	}
	return id
}

// String is the short form ParseDevice reads: "cpu", "cuda:N", or the
// provider's name in lower case.
func (p Provider) String() string {
	switch {
	case p.IsCPU():
		return string(CPU)
	case p.IsCUDA():
		return fmt.Sprintf("cuda:%d", p.DeviceID())
	}
	return strings.ToLower(p.Name)
}

// options returns a copy of the provider options without key drop.
func (p Provider) options(drop ...string) map[string]string {
	out := maps.Clone(p.Options)
	if out == nil {
		out = map[string]string{}
	}
	for _, k := range drop {
		delete(out, k)
	}
	return out
}

// GraphOpt caps ONNX Runtime's graph optimisations: "off", "basic",
// "extended" or "all". The empty value is "all", except on the plugin CUDA
// provider (see sessionOptions). Lowering it is a way around a provider
// that fails on a fused kernel.
type GraphOpt string

// ParseGraphOpt checks a graph optimisation level.
func ParseGraphOpt(s string) (GraphOpt, error) {
	g := GraphOpt(strings.ToLower(strings.TrimSpace(s)))
	if _, err := g.level(); err != nil {
		return "", err
	}
	return g, nil
}

func (g GraphOpt) level() (ort.GraphOptimizationLevel, error) {
	switch strings.ToLower(string(g)) {
	case "", "all":
		return ort.GraphOptimizationLevelEnableAll, nil
	case "extended":
		return ort.GraphOptimizationLevelEnableExtended, nil
	case "basic":
		return ort.GraphOptimizationLevelEnableBasic, nil
	case "off", "none", "0":
		return ort.GraphOptimizationLevelDisableAll, nil
	}
	return 0, fmt.Errorf("%w: graph optimisation level %q: want off, basic, extended or all", ErrOption, string(g))
}

// Options configure the sessions of an engine. The zero value runs on the
// CPU with every optimisation, in the process-wide thread pool.
type Options struct {
	// Provider is the execution provider (zero: the CPU).
	Provider Provider
	// Threads, when positive, gives each session its own pool of that many
	// intra-op threads. Zero (the default) makes every session use the one
	// process-wide pool (see Process): sessions run one after another, so
	// one pool serves them all without threads fighting.
	Threads int
	// Spin lets idle threads of per-session pools spin-wait. Off by default:
	// with many sessions run in turn, spinning threads of one session steal
	// the cores of the next.
	Spin bool
	// GraphOpt caps ONNX Runtime's graph optimisations (see GraphOpt).
	GraphOpt GraphOpt
	// DisableOptimizations runs graphs as built (for debugging); it wins
	// over GraphOpt.
	DisableOptimizations bool
	// ReadMemory bounds the bytes of read tensors a plan holds at once
	// before it is cut at a stage boundary (readcuts.go; 0:
	// DefaultReadMemory, negative: cut at every boundary).
	ReadMemory int64
	// StageCuts makes every plan cut at the residual boundaries
	// (Graph.Boundaries) even with no hook there: one session for the
	// embedding, then one per layer. A way to find which stage a provider
	// fails in, and to compare per-stage with fused runs.
	StageCuts bool
	// OptimizedDir, when set, makes ORT write each session's optimised graph
	// there (for inspecting which fusions fired).
	OptimizedDir string
	// NoPrepack turns off ORT's prepacking of constant weights (MLAS packs B
	// once per session otherwise); sessions then read the shared weights as
	// they are.
	NoPrepack bool
	// ProfileDir, when set, makes ORT write a profile (JSON trace of every
	// node's run time) of each session there when the session closes.
	ProfileDir string
	// CUDAProviderLibrary is the plugin CUDA provider library to load where
	// the ONNX Runtime core has no CUDA compiled in (default:
	// libonnxruntime_providers_cuda.so beside the core library).
	CUDAProviderLibrary string
	// AllowSlice lets graphs holding Slice nodes run on the plugin CUDA
	// provider, for a provider without the crash ONNX Runtime 1.29's has.
	AllowSlice bool
	// Process holds the settings of ONNX Runtime's process-wide environment;
	// see Process for when they take effect.
	Process Process

	// noMemPattern opens a session without ONNX Runtime's memory pattern
	// (set per segment: sessions.go's handsOutReads).
	noMemPattern bool
}

// Process is the configuration of ONNX Runtime's one environment per
// process: its shared thread pool, its log level and its telemetry. It is
// fixed when the first engine starts ONNX Runtime. Zero fields mean "no
// preference": the defaults set with SetProcessDefaults apply, then the
// built-in ones. A later engine whose non-zero fields differ from the
// running environment is refused with ErrProcessStarted.
type Process struct {
	// Threads is the size of the shared intra-op pool (0: one per core).
	Threads int
	// NoSpin makes the pool's idle threads sleep at once. By default they
	// spin briefly: with one pool for every session there is no other pool
	// for spinning threads to take cores from, and a thread that spins takes
	// the next operator without being woken.
	NoSpin bool
	// LogLevel is ONNX Runtime's log level: verbose, info, warning, error
	// (the default) or fatal.
	LogLevel string
	// Telemetry allows ONNX Runtime's telemetry events, which are disabled
	// by default.
	Telemetry bool
}

// ErrProcessStarted is returned for process settings that differ from
// those ONNX Runtime was started with.
var ErrProcessStarted = errors.New("onnxruntime already started with other process settings")

// maxThreadsPerCore bounds the shared pool: more threads than this many per
// core only make ONNX Runtime slower (or look hung while it starts them).
const maxThreadsPerCore = 16

// validate checks p's fields.
func (p Process) validate() error {
	if p.Threads < 0 || p.Threads > maxThreadsPerCore*goruntime.NumCPU() {
		return fmt.Errorf("%w: %d threads: want 1 to %d (%d per core)", ErrOption, p.Threads, maxThreadsPerCore*goruntime.NumCPU(), maxThreadsPerCore)
	}
	_, err := p.logLevel()
	return err
}

// logLevel is ORT's OrtLoggingLevel for the level's name.
func (p Process) logLevel() (int, error) {
	switch strings.ToLower(p.LogLevel) {
	case "verbose":
		return 0, nil
	case "info":
		return 1, nil
	case "warning":
		return 2, nil
	case "", "error":
		return 3, nil
	case "fatal":
		return 4, nil
	}
	return 0, fmt.Errorf("%w: log level %q: want verbose, info, warning, error or fatal", ErrOption, p.LogLevel)
}

// over returns p with its zero fields taken from base.
func (p Process) over(base Process) Process {
	if p.Threads == 0 {
		p.Threads = base.Threads
	}
	p.NoSpin = p.NoSpin || base.NoSpin
	if p.LogLevel == "" {
		p.LogLevel = base.LogLevel
	}
	p.Telemetry = p.Telemetry || base.Telemetry
	return p
}

// conflicts reports how want's non-zero fields differ from the running
// environment's settings (nil when they agree).
func (p Process) conflicts(running Process) error {
	var diffs []string
	if p.Threads != 0 && p.Threads != running.Threads {
		diffs = append(diffs, fmt.Sprintf("%d threads (running: %d)", p.Threads, running.Threads))
	}
	if p.NoSpin && !running.NoSpin {
		diffs = append(diffs, "no spinning (running: spinning)")
	}
	if p.LogLevel != "" && !strings.EqualFold(p.LogLevel, running.LogLevel) {
		diffs = append(diffs, fmt.Sprintf("log level %s (running: %s)", p.LogLevel, running.LogLevel))
	}
	if p.Telemetry && !running.Telemetry {
		diffs = append(diffs, "telemetry on (running: off)")
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrProcessStarted, strings.Join(diffs, ", "))
}

func (o Options) optLevel() (ort.GraphOptimizationLevel, error) {
	if o.DisableOptimizations {
		return ort.GraphOptimizationLevelDisableAll, nil
	}
	return o.GraphOpt.level()
}

func (o Options) threads() int {
	if o.Threads > 0 {
		return o.Threads
	}
	return GlobalThreads()
}
