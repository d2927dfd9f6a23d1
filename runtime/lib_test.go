package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	ort "github.com/yalue/onnxruntime_go"
)

func TestFindLibraryEnvMissingFile(t *testing.T) {
	t.Setenv(EnvLibrary, filepath.Join(t.TempDir(), "nope.so"))
	_, err := FindLibrary()
	if !errors.Is(err, ErrLibraryNotFound) || !strings.Contains(err.Error(), "make ort") {
		t.Fatalf("got %v", err)
	}
}

func TestFindLibraryNowhere(t *testing.T) {
	t.Setenv(EnvLibrary, "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Setenv("LD_LIBRARY_PATH", "")
	old := systemDirs
	systemDirs = []string{t.TempDir()}
	defer func() { systemDirs = old }()
	_, err := FindLibrary()
	if !errors.Is(err, ErrLibraryNotFound) || !strings.Contains(err.Error(), EnvLibrary) {
		t.Fatalf("got %v", err)
	}
}

func TestFindLibraryPrefersNewestCachedVersion(t *testing.T) {
	cache := t.TempDir()
	t.Setenv(EnvLibrary, "")
	t.Setenv("XDG_CACHE_HOME", cache)
	for _, v := range []string{"1.9.0", "1.30.0", "1.24.1"} {
		d := filepath.Join(cache, "onnx-tdb", "onnxruntime", v)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "libonnxruntime.so.1"), []byte("x"), 0o644)
	}
	got, err := FindLibrary()
	if err != nil || !strings.Contains(got, "1.30.0") {
		t.Fatalf("got %s, %v", got, err)
	}
}

func TestCheckLibraryRejectsOtherFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "libonnxruntime.so")
	os.WriteFile(p, []byte("not a library"), 0o644)
	if _, err := CheckLibrary(p); !errors.Is(err, ErrNotORT) {
		t.Fatalf("got %v", err)
	}
}

// fakeORT compiles a shared library that claims to be ONNX Runtime of a
// given version and C API.
func fakeORT(t *testing.T, version string, maxAPI int) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not found")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "fake.c")
	code := `#include <stdint.h>
#include <stddef.h>
static const char* ver(void) { return "` + version + `"; }
static const void* api(uint32_t v) { static int x; return v <= ` + itoa(maxAPI) + ` ? &x : NULL; }
static struct { const void* (*a)(uint32_t); const char* (*v)(void); } base = { api, ver };
const void* OrtGetApiBase(void) { return &base; }
`
	os.WriteFile(src, []byte(code), 0o644)
	lib := filepath.Join(dir, "libonnxruntime.so")
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return lib
}

func itoa(n int) string {
	s := ""
	for n > 0 || s == "" {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return s
}

func TestCheckLibraryTooOld(t *testing.T) {
	lib := fakeORT(t, "1.16.3", 16)
	_, err := CheckLibrary(lib)
	if !errors.Is(err, ErrLibraryTooOld) || !strings.Contains(err.Error(), "1.16.3") || !strings.Contains(err.Error(), "make ort") {
		t.Fatalf("got %v", err)
	}
}

func TestCheckLibraryNew(t *testing.T) {
	lib := fakeORT(t, "1.31.0", 31)
	v, err := CheckLibrary(lib)
	if err != nil || v != "1.31.0" {
		t.Fatalf("got %s, %v", v, err)
	}
}

func TestRealLibrary(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	path, v := Library()
	if path == "" || len(parseVersion(v)) < 2 {
		t.Fatalf("library %q version %q", path, v)
	}
	t.Logf("onnxruntime %s at %s", v, path)
}

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]Device{"": CPU, "cpu": CPU, "cuda": CUDA, "cuda:1": CUDA} {
		d, _, err := ParseDevice(in)
		if err != nil || d != want {
			t.Errorf("%q: %v %v", in, d, err)
		}
	}
	if _, _, err := ParseDevice("tpu"); err == nil {
		t.Error("tpu accepted")
	}
}

func TestGraphOptLevel(t *testing.T) {
	for _, tc := range []struct {
		level   GraphOpt
		disable bool
		want    ort.GraphOptimizationLevel
		bad     bool
	}{
		{"", false, ort.GraphOptimizationLevelEnableAll, false},
		{"all", false, ort.GraphOptimizationLevelEnableAll, false},
		{"Extended", false, ort.GraphOptimizationLevelEnableExtended, false},
		{"basic", false, ort.GraphOptimizationLevelEnableBasic, false},
		{"off", false, ort.GraphOptimizationLevelDisableAll, false},
		{"", true, ort.GraphOptimizationLevelDisableAll, false},
		{"fastest", false, 0, true},
	} {
		got, err := Options{GraphOpt: tc.level, DisableOptimizations: tc.disable}.optLevel()
		if tc.bad {
			if !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), string(tc.level)) {
				t.Errorf("%q: want ErrOption naming the level, got %v", tc.level, err)
			}
			if _, err := ParseGraphOpt(string(tc.level)); !errors.Is(err, ErrOption) {
				t.Errorf("ParseGraphOpt(%q) accepted", tc.level)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q (disable %v): got %v, %v; want %v", tc.level, tc.disable, got, err, tc.want)
		}
	}
}

func TestProcessSettings(t *testing.T) {
	base := Process{Threads: 2, NoSpin: true, LogLevel: "warning"}
	if got := (Process{}).over(base); got != base {
		t.Errorf("zero over base: %+v", got)
	}
	if got := (Process{Threads: 3, Telemetry: true}).over(base); got.Threads != 3 || !got.NoSpin || !got.Telemetry || got.LogLevel != "warning" {
		t.Errorf("override: %+v", got)
	}
	for _, tc := range []struct {
		p    Process
		fail bool
	}{
		{Process{}, false},
		{Process{Threads: 2}, false},
		{Process{Threads: 4}, true},
		{Process{NoSpin: true}, false},
		{Process{LogLevel: "WARNING"}, false},
		{Process{LogLevel: "info"}, true},
		{Process{Telemetry: true}, true},
	} {
		if err := tc.p.conflicts(base); (err != nil) != tc.fail || (err != nil && !errors.Is(err, ErrProcessStarted)) {
			t.Errorf("%+v against %+v: %v", tc.p, base, err)
		}
	}
	for _, bad := range []Process{{LogLevel: "loud"}, {Threads: -1}, {Threads: 1 << 20}} {
		if err := bad.validate(); !errors.Is(err, ErrOption) {
			t.Errorf("%+v: %v, want ErrOption", bad, err)
		}
		if err := SetProcessDefaults(bad); !errors.Is(err, ErrOption) {
			t.Errorf("SetProcessDefaults(%+v): %v, want ErrOption", bad, err)
		}
	}
	if err := (Process{Threads: 4, LogLevel: "info"}).validate(); err != nil {
		t.Errorf("valid settings refused: %v", err)
	}
	// Once ONNX Runtime runs, its pool cannot change.
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	run, ok := RunningProcess()
	if !ok || run.Threads != GlobalThreads() || run.NoSpin == GlobalSpin() {
		t.Fatalf("running %+v (%v), GlobalThreads %d, GlobalSpin %v", run, ok, GlobalThreads(), GlobalSpin())
	}
	if err := SetProcessDefaults(Process{Threads: run.Threads + 1}); !errors.Is(err, ErrProcessStarted) {
		t.Errorf("changing the threads of a running pool: %v", err)
	}
	if err := Start(Process{Threads: run.Threads}); err != nil {
		t.Errorf("the running settings again: %v", err)
	}
}

func TestProvider(t *testing.T) {
	for _, tc := range []struct {
		in   string
		cpu  bool
		cuda bool
		id   int
		str  string
	}{
		{"", true, false, 0, "cpu"},
		{"cpu", true, false, 0, "cpu"},
		{"cuda", false, true, 0, "cuda:0"},
		{"cuda:3", false, true, 3, "cuda:3"},
	} {
		p, err := ParseProvider(tc.in)
		if err != nil || p.IsCPU() != tc.cpu || p.IsCUDA() != tc.cuda || p.DeviceID() != tc.id || p.String() != tc.str {
			t.Errorf("%q: %+v %v", tc.in, p, err)
		}
	}
	if !(Provider{}).IsCPU() {
		t.Error("the zero provider is not the CPU")
	}
	if p := CUDAProvider(1); p.Options["use_tf32"] != "0" || p.options("device_id")["device_id"] != "" || p.Options["device_id"] != "1" {
		t.Errorf("CUDA provider options %v", p.Options)
	}
	if s := (Provider{Name: "XNNPACK"}).String(); s != "xnnpack" {
		t.Errorf("XNNPACK: %s", s)
	}
}

// TestOtherProviderByName: a provider the library does not have fails with
// ErrProviderUnavailable naming it, instead of running on the CPU silently.
func TestOtherProviderByName(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	_, err := Options{Provider: Provider{Name: "NoSuchEP"}}.sessionOptions("", "")
	if !errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), "NoSuchEP") {
		t.Fatalf("unknown provider: %v", err)
	}
}

func TestCUDAHint(t *testing.T) {
	msg := "Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file: No such file or directory; libcublasLt.so.12: cannot open shared object file; libcudnn.so.9: cannot open shared object file"
	if got := missingLibraries(msg); len(got) != 2 || got[0] != "libcudnn.so.9" || got[1] != "libcublasLt.so.12" {
		t.Fatalf("missing %v", got)
	}
	err := withCUDAHint(fmt.Errorf("%w: %s", ErrCUDAUnavailable, msg))
	for _, want := range []string{"libcudnn.so.9 (cuDNN)", "libcublasLt.so.12 (cuBLAS", "make ort-gpu", "README's CUDA section"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if !errors.Is(err, ErrCUDAUnavailable) {
		t.Error("hint lost the sentinel")
	}
	if again := withCUDAHint(err); again.Error() != err.Error() {
		t.Error("hint added twice")
	}
}

// TestCUDAPluginSliceGuard: with the plugin CUDA provider in use, a graph
// holding a Slice is refused with a clear error instead of crashing the
// provider; others pass, and the variable lets it through.
func TestCUDAPluginSliceGuard(t *testing.T) {
	cudaPlugin.Lock()
	saved := struct {
		done bool
		path string
		err  error
	}{cudaPlugin.done, cudaPlugin.path, cudaPlugin.err}
	cudaPlugin.done, cudaPlugin.err = true, nil
	cudaPlugin.Unlock()
	defer func() {
		cudaPlugin.Lock()
		cudaPlugin.done, cudaPlugin.path, cudaPlugin.err = saved.done, saved.path, saved.err
		cudaPlugin.Unlock()
	}()
	build := func(op string) *onnxpb.ModelProto {
		b := graphs.NewBuilder("g")
		x := b.Input("x", graphs.Float, "N")
		var y string
		if op == "Slice" {
			y = b.Op("Slice", "y", []string{x, b.ConstI64("s", []int64{1}, 0), b.ConstI64("e", []int64{1}, 1)})
		} else {
			y = b.Op("Neg", "y", []string{x})
		}
		b.Output(y, graphs.Float, "M")
		return b.Model()
	}
	o := Options{Provider: CUDAProvider(0)}
	if err := checkCUDAPluginOps(o, build("Slice")); !errors.Is(err, ErrCUDAUnavailable) || !strings.Contains(err.Error(), "AllowSlice") {
		t.Fatalf("Slice on the plugin provider: %v", err)
	}
	if err := checkCUDAPluginOps(o, build("Neg")); err != nil {
		t.Fatalf("a graph without Slice: %v", err)
	}
	if err := checkCUDAPluginOps(Options{}, build("Slice")); err != nil {
		t.Fatalf("Slice on the CPU: %v", err)
	}
	o.AllowSlice = true
	if err := checkCUDAPluginOps(o, build("Slice")); err != nil {
		t.Fatalf("Slice allowed by the option: %v", err)
	}
}

// TestFindGPULibraryPrefersOrtGPUInstall lays out what `make ort` and `make
// ort-gpu` install (fake files): a CUDA engine's process finds the GPU
// install's core (the newest one that holds the CUDA provider), a CPU one
// the plain install's.
func TestFindGPULibraryPrefersOrtGPUInstall(t *testing.T) {
	cache := t.TempDir()
	t.Setenv(EnvLibrary, "")
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("LD_LIBRARY_PATH", "")
	put := func(dir string, files ...string) {
		os.MkdirAll(dir, 0o755)
		for _, f := range files {
			os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
		}
	}
	cpu := filepath.Join(cache, "onnx-tdb", "onnxruntime", "1.30.0")
	put(cpu, "libonnxruntime.so.1")
	gpuRoot := filepath.Join(cache, "onnx-tdb", "onnxruntime-gpu")
	put(filepath.Join(gpuRoot, "0.4.9"), "libonnxruntime.so", "libonnxruntime_providers_shared.so", cudaProviderLib)
	put(filepath.Join(gpuRoot, "0.5.0"), "libonnxruntime.so") // incomplete: no CUDA provider
	put(filepath.Join(gpuRoot, "0.4.8"), "libonnxruntime.so", cudaProviderLib)
	if GPUCacheDir() != gpuRoot {
		t.Fatalf("GPUCacheDir %s, want %s", GPUCacheDir(), gpuRoot)
	}
	for _, tc := range []struct {
		gpu  bool
		want string
	}{
		{false, filepath.Join(cpu, "libonnxruntime.so.1")},
		{true, filepath.Join(gpuRoot, "0.4.9", "libonnxruntime.so")},
	} {
		got, err := findLibrary(tc.gpu)
		if err != nil || got != tc.want {
			t.Errorf("gpu %v: got %s, %v; want %s", tc.gpu, got, err, tc.want)
		}
	}
	if got, err := FindGPULibrary(); err != nil || !strings.Contains(got, "onnxruntime-gpu") {
		t.Errorf("FindGPULibrary: %s, %v", got, err)
	}
	// Without a GPU install, a CUDA process still finds the plain one.
	os.RemoveAll(gpuRoot)
	if got, err := FindGPULibrary(); err != nil || !strings.HasPrefix(got, cpu) {
		t.Errorf("no GPU install: %s, %v", got, err)
	}
}
