// Package runtime owns ONNX Runtime for onnx-tdb: finding the shared library
// and checking its version, the process-wide environment, session options
// (CPU or CUDA provider, threads), and the planner and executor that run a
// model's graph cut at its hooked points, calling the hooks between segments.
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
// ${XDG_CACHE_HOME:-~/.cache}/onnx-tdb/onnxruntime.
func CacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "onnx-tdb", "onnxruntime")
}

var systemDirs = []string{"/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/opt/onnxruntime/lib"}

var libNames = []string{"libonnxruntime.so", "libonnxruntime.so.1"}

// FindLibrary returns the ONNX Runtime library to load: $ONNXRUNTIME_LIB, then
// the per-user cache (newest version first), then LD_LIBRARY_PATH and the
// system library folders.
func FindLibrary() (string, error) {
	if p := os.Getenv(EnvLibrary); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("%w: %s=%s does not name a file; %s", ErrLibraryNotFound, EnvLibrary, p, fixHint)
		}
		return p, nil
	}
	var dirs []string
	if c := CacheDir(); c != "" {
		versions, _ := os.ReadDir(c)
		var vs []string
		for _, v := range versions {
			if v.IsDir() {
				vs = append(vs, v.Name())
			}
		}
		sort.Slice(vs, func(i, j int) bool { return versionLess(vs[j], vs[i]) })
		for _, v := range vs {
			dirs = append(dirs, filepath.Join(c, v))
		}
	}
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
)

// Init finds, checks and loads ONNX Runtime once per process. Later calls
// return at once.
func Init() error {
	initOnce.Lock()
	defer initOnce.Unlock()
	if initDone {
		return nil
	}
	path, err := FindLibrary()
	if err != nil {
		return err
	}
	version, err := CheckLibrary(path)
	if err != nil {
		return err
	}
	if err := initShim(path, GlobalThreads(), GlobalSpin()); err != nil {
		return fmt.Errorf("start onnxruntime %s from %s: %w", version, path, err)
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("start onnxruntime %s from %s: %w", version, path, err)
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
	initDone, initPath, initVersion = true, path, version
	return nil
}

var globalThreads int

// SetGlobalThreads sets the size of the process-wide intra-op thread pool
// that sessions share (0: one thread per core). It takes effect only before
// the first engine starts ONNX Runtime; later calls return an error.
func SetGlobalThreads(n int) error {
	initOnce.Lock()
	defer initOnce.Unlock()
	if initDone && n != globalThreads {
		return fmt.Errorf("onnxruntime already started with %d threads", GlobalThreads())
	}
	globalThreads = n
	return nil
}

var globalSpin *bool

// SetGlobalSpin says whether idle threads of the process-wide pool spin
// before they sleep. It takes effect only before the first engine starts
// ONNX Runtime; later calls that would change it return an error.
func SetGlobalSpin(on bool) error {
	initOnce.Lock()
	defer initOnce.Unlock()
	if initDone && on != GlobalSpin() {
		return fmt.Errorf("onnxruntime already started with spinning %v", GlobalSpin())
	}
	globalSpin = &on
	return nil
}

// EnvSpin names the environment variable that turns the shared pool's
// spinning off (0) or on (1) when SetGlobalSpin was not called.
const EnvSpin = "ONNX_TDB_SPIN"

// GlobalSpin reports whether the process-wide pool's idle threads spin: the
// value given to SetGlobalSpin, else $ONNX_TDB_SPIN, else on. With one pool
// for every session there is no other pool for spinning threads to take
// cores from, and a thread that spins briefly takes the next operator
// without being woken (decoding at batch 1 runs ~20% faster on 2 cores).
func GlobalSpin() bool {
	if globalSpin != nil {
		return *globalSpin
	}
	return os.Getenv(EnvSpin) != "0"
}

// EnvThreads names the environment variable that sets the process-wide
// thread pool's size when SetGlobalThreads was not called.
const EnvThreads = "ONNX_TDB_THREADS"

// GlobalThreads is the size of the process-wide thread pool: the value given
// to SetGlobalThreads, else $ONNX_TDB_THREADS, else one thread per core.
func GlobalThreads() int {
	if globalThreads > 0 {
		return globalThreads
	}
	if n, err := strconv.Atoi(os.Getenv(EnvThreads)); err == nil && n > 0 {
		return n
	}
	return goruntime.NumCPU()
}

// Library returns the path and version of the loaded library ("" before Init).
func Library() (path, version string) {
	initOnce.Lock()
	defer initOnce.Unlock()
	return initPath, initVersion
}
