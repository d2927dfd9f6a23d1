package runtime

import (
	"errors"
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
		env     string
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
		t.Setenv(EnvGraphOpt, tc.env)
		got, err := Options{DisableOptimizations: tc.disable}.optLevel()
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), EnvGraphOpt) {
				t.Errorf("%q: want an error naming %s, got %v", tc.env, EnvGraphOpt, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q (disable %v): got %v, %v; want %v", tc.env, tc.disable, got, err, tc.want)
		}
	}
}

func TestGlobalSpin(t *testing.T) {
	saved := globalSpin
	defer func() { globalSpin = saved }()
	globalSpin = nil
	for env, want := range map[string]bool{"": true, "1": true, "0": false} {
		t.Setenv(EnvSpin, env)
		if got := GlobalSpin(); got != want {
			t.Errorf("%s=%q: spin %v, want %v", EnvSpin, env, got, want)
		}
	}
	off := false
	globalSpin = &off
	t.Setenv(EnvSpin, "1")
	if GlobalSpin() {
		t.Error("SetGlobalSpin(false) did not override the environment")
	}
	// Once ONNX Runtime runs, the pool cannot change.
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	if err := SetGlobalSpin(!GlobalSpin()); err == nil {
		t.Error("changing the spin of a running pool was accepted")
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
	o := Options{Device: CUDA}
	if err := checkCUDAPluginOps(o, build("Slice")); !errors.Is(err, ErrCUDAUnavailable) || !strings.Contains(err.Error(), EnvAllowSlice) {
		t.Fatalf("Slice on the plugin provider: %v", err)
	}
	if err := checkCUDAPluginOps(o, build("Neg")); err != nil {
		t.Fatalf("a graph without Slice: %v", err)
	}
	if err := checkCUDAPluginOps(Options{}, build("Slice")); err != nil {
		t.Fatalf("Slice on the CPU: %v", err)
	}
	t.Setenv(EnvAllowSlice, "1")
	if err := checkCUDAPluginOps(o, build("Slice")); err != nil {
		t.Fatalf("Slice allowed by %s: %v", EnvAllowSlice, err)
	}
}
