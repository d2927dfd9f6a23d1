package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// EnvLibrary names the environment variable that points at the ONNX Runtime
// shared library; it is searched first.
const EnvLibrary = "ONNXRUNTIME_LIB"

// MinAPIVersion is the oldest ONNX Runtime C API this build works with
// (onnxruntime_go v1.27.0 asks for API 24, which ORT 1.24 introduced).
const MinAPIVersion = 24

// Errors of library discovery and start-up.
var (
	ErrLibraryNotFound = errors.New("onnxruntime shared library not found")
	ErrLibraryTooOld   = errors.New("onnxruntime shared library too old")
	ErrNotORT          = errors.New("not an onnxruntime shared library")
)

const fixHint = "run `make ort` (installs onnxruntime 1.30 from the npm registry into the per-user cache) or set " + EnvLibrary + " to the path of libonnxruntime.so (version >= 1.24)"

// CacheDir is the per-user folder `make ort` installs into:
// ${XDG_CACHE_HOME:-~/.cache}/onnx-tdb/onnxruntime, one subfolder per
// version.
func CacheDir() string { return userCache("onnxruntime") }

// GPUCacheDir is the per-user folder `make ort-gpu` installs the
// GPU-capable core and its CUDA provider into:
// ${XDG_CACHE_HOME:-~/.cache}/onnx-tdb/onnxruntime-gpu, one subfolder per
// package version.
func GPUCacheDir() string { return userCache("onnxruntime-gpu") }

func userCache(name string) string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "onnx-tdb", name)
}

var systemDirs = []string{"/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/opt/onnxruntime/lib"}

var libNames = []string{"libonnxruntime.so", "libonnxruntime.so.1"}

// cudaProviderLib is the CUDA provider library a GPU-capable install holds
// beside its core.
const cudaProviderLib = "libonnxruntime_providers_cuda.so"

// FindLibrary returns the ONNX Runtime library to load: $ONNXRUNTIME_LIB, then
// the per-user cache (newest version first), then LD_LIBRARY_PATH and the
// system library folders.
func FindLibrary() (string, error) { return findLibrary(false) }

// FindGPULibrary is FindLibrary for a process whose first engine runs on
// CUDA: the GPU-capable installs of `make ort-gpu` (those holding the CUDA
// provider beside the core, newest first) come before the others.
func FindGPULibrary() (string, error) { return findLibrary(true) }

func findLibrary(gpu bool) (string, error) {
	if p := os.Getenv(EnvLibrary); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("%w: %s=%s does not name a file; %s", ErrLibraryNotFound, EnvLibrary, p, fixHint)
		}
		return p, nil
	}
	var dirs []string
	if gpu {
		for _, d := range versionDirs(GPUCacheDir()) {
			if _, err := os.Stat(filepath.Join(d, cudaProviderLib)); err == nil {
				dirs = append(dirs, d)
			}
		}
	}
	dirs = append(dirs, versionDirs(CacheDir())...)
	for _, d := range strings.Split(os.Getenv("LD_LIBRARY_PATH"), ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, systemDirs...)
	for _, d := range dirs {
		for _, n := range libNames {
			p := filepath.Join(d, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w (searched $%s, %s, $LD_LIBRARY_PATH and %s); %s",
		ErrLibraryNotFound, EnvLibrary, CacheDir(), strings.Join(systemDirs, ", "), fixHint)
}

// versionDirs lists the subfolders of root, newest version first.
func versionDirs(root string) []string {
	if root == "" {
		return nil
	}
	entries, _ := os.ReadDir(root)
	var vs []string
	for _, v := range entries {
		if v.IsDir() {
			vs = append(vs, v.Name())
		}
	}
	sort.Slice(vs, func(i, j int) bool { return versionLess(vs[j], vs[i]) })
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = filepath.Join(root, v)
	}
	return out
}

// parseVersion splits "1.30.0" into numbers.
func parseVersion(v string) []int {
	var out []int
	for _, p := range strings.Split(v, ".") {
		n, err := strconv.Atoi(strings.TrimFunc(p, func(r rune) bool { return r < '0' || r > '9' }))
		if err != nil {
			break
		}
		out = append(out, n)
	}
	return out
}

func versionLess(a, b string) bool {
	va, vb := parseVersion(a), parseVersion(b)
	for i := 0; i < len(va) && i < len(vb); i++ {
		if va[i] != vb[i] {
			return va[i] < vb[i]
		}
	}
	return len(va) < len(vb)
}

// CheckLibrary loads the library at path and returns its version, failing
// with ErrNotORT or ErrLibraryTooOld when it cannot serve this build.
func CheckLibrary(path string) (string, error) {
	version, apiOK, err := probeLibrary(path, MinAPIVersion)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v; %s", ErrNotORT, path, err, fixHint)
	}
	v := parseVersion(version)
	if !apiOK || len(v) < 2 || v[0] < 1 || (v[0] == 1 && v[1] < MinAPIVersion) {
		return version, fmt.Errorf("%w: %s is version %s, this build needs >= 1.%d (C API %d); %s",
			ErrLibraryTooOld, path, version, MinAPIVersion, MinAPIVersion, fixHint)
	}
	return version, nil
}

var (
	initOnce    sync.Mutex
	initDone    bool
	initPath    string
	initVersion string
	// defaults are the process settings SetProcessDefaults gave; running
	// those ONNX Runtime was started with.
	defaults Process
	running  Process
)

// Init finds, checks and loads ONNX Runtime once per process, with the
// process defaults. Later calls return at once.
func Init() error { return start(Process{}, false) }

// Start is Init with process settings p over the defaults. Once ONNX
// Runtime runs, it returns ErrProcessStarted where p's non-zero fields
// differ from the running environment's.
func Start(p Process) error { return start(p, false) }

// start is Start; gpu says the first engine runs on CUDA, so a GPU-capable
// install is looked for first.
func start(p Process, gpu bool) error {
	initOnce.Lock()
	defer initOnce.Unlock()
	if err := p.validate(); err != nil {
		return err
	}
	if initDone {
		return p.conflicts(running)
	}
	p = p.over(defaults)
	if p.Threads <= 0 {
		p.Threads = goruntime.NumCPU()
	}
	if p.LogLevel == "" {
		p.LogLevel = "error"
	}
	level, err := p.logLevel()
	if err != nil {
		return err
	}
	path, err := findLibrary(gpu)
	if err != nil {
		return err
	}
	version, err := CheckLibrary(path)
	if err != nil {
		return err
	}
	if err := initShim(path, p.Threads, !p.NoSpin, level); err != nil {
		return fmt.Errorf("start onnxruntime %s from %s: %w", version, path, err)
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("start onnxruntime %s from %s: %w", version, path, err)
	}
	// Telemetry events (a device id, a local event database, an endpoint
	// in some builds) are off unless the user allows them.
	if !p.Telemetry {
		if err := ort.DisableTelemetry(); err != nil {
			return fmt.Errorf("start onnxruntime: disable telemetry: %w", err)
		}
	}
	// One CPU arena in the environment that every session uses (with
	// session.use_env_allocators), instead of an arena per session.
	mi, err := ort.GetMemoryInfo()
	if err != nil {
		return fmt.Errorf("start onnxruntime: %w", err)
	}
	// kSameAsRequested (1): grow by what a run needs, not to the next power
	// of two, so one long run does not leave twice its activations behind.
	arena, err := ort.NewArenaCfg(0, 1, -1, -1)
	if err != nil {
		return fmt.Errorf("start onnxruntime: arena: %w", err)
	}
	defer arena.Destroy()
	if err := ort.CreateAndRegisterAllocator(mi, arena); err != nil {
		return fmt.Errorf("start onnxruntime: shared allocator: %w", err)
	}
	initDone, initPath, initVersion, running = true, path, version, p
	return nil
}

// SetProcessDefaults sets the process settings ONNX Runtime starts with
// where an engine's Options.Process leaves a field zero (the CLI sets them
// from its flags and environment). Once ONNX Runtime runs, settings that
// differ from the running ones return ErrProcessStarted.
func SetProcessDefaults(p Process) error {
	initOnce.Lock()
	defer initOnce.Unlock()
	if err := p.validate(); err != nil {
		return err
	}
	if initDone {
		return p.conflicts(running)
	}
	defaults = p
	return nil
}

// RunningProcess reports the settings ONNX Runtime runs with (ok false
// before it starts).
func RunningProcess() (p Process, ok bool) {
	initOnce.Lock()
	defer initOnce.Unlock()
	return running, initDone
}

// GlobalSpin reports whether the process-wide pool's idle threads spin: as
// started, else as it would start with the defaults.
func GlobalSpin() bool {
	initOnce.Lock()
	defer initOnce.Unlock()
	if initDone {
		return !running.NoSpin
	}
	return !defaults.NoSpin
}

// GlobalThreads is the size of the process-wide thread pool: as started,
// else as it would start with the defaults (0 there: one per core).
func GlobalThreads() int {
	initOnce.Lock()
	defer initOnce.Unlock()
	p := defaults
	if initDone {
		p = running
	}
	if p.Threads > 0 {
		return p.Threads
	}
	return goruntime.NumCPU()
}

// Library returns the path and version of the loaded library ("" before Init).
func Library() (path, version string) {
	initOnce.Lock()
	defer initOnce.Unlock()
	return initPath, initVersion
}
