package ortenv

import (
	"testing"

	"github.com/onnx-tdb/onnx-tdb/runtime"
)

func TestOptions(t *testing.T) {
	env := map[string]string{
		Threads: "3", Spin: "0", LogLevel: "Warning", Telemetry: "1", GraphOpt: "basic",
		StageCuts: "1", CUDAProvider: "/x/libp.so", AllowSlice: "1", ProfileDir: "/p", OptimizedDir: "/o",
		ReadMemory: "16",
	}
	o, err := Options(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.Options{
		GraphOpt: "basic", StageCuts: true, CUDAProviderLibrary: "/x/libp.so", AllowSlice: true,
		Process: runtime.Process{Threads: 3, NoSpin: true, LogLevel: "warning", Telemetry: true},
	}
	if o.GraphOpt != want.GraphOpt || o.StageCuts != want.StageCuts || o.CUDAProviderLibrary != want.CUDAProviderLibrary ||
		o.AllowSlice != want.AllowSlice || o.Process != want.Process || o.ProfileDir != "/p" || o.OptimizedDir != "/o" ||
		o.ReadMemory != 16<<20 {
		t.Errorf("got %+v\nwant %+v", o, want)
	}
	zero, err := Options(func(string) string { return "" })
	if err != nil || zero.Process != (runtime.Process{}) || zero.GraphOpt != "" || zero.StageCuts || zero.AllowSlice {
		t.Errorf("unset: %+v %v", zero, err)
	}
	on, _ := Options(func(k string) string { return map[string]string{Spin: "1"}[k] })
	if on.Process.NoSpin {
		t.Error("ONNX_TDB_SPIN=1 turned spinning off")
	}
}

func TestOptionsBad(t *testing.T) {
	for name, v := range map[string]string{Threads: "many", Spin: "yes", GraphOpt: "fastest", StageCuts: "2", Telemetry: "on", ReadMemory: "lots"} {
		if _, err := Options(func(k string) string { return map[string]string{name: v}[k] }); err == nil {
			t.Errorf("%s=%s accepted", name, v)
		}
	}
}
