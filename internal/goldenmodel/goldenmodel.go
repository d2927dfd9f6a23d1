package goldenmodel

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/internal/ortenv"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// DeviceEnv names the variable that moves the golden tests to another
// device: ONNX_TDB_TEST_DEVICE=cuda runs them on the GPU (default: CPU).
const DeviceEnv = "ONNX_TDB_TEST_DEVICE"

// Test binaries honour ONNX_TDB_THREADS, ONNX_TDB_SPIN and the other
// process settings as the CLI does (the runtime reads no environment).
func init() {
	if err := ortenv.ApplyProcessDefaults(); err != nil {
		panic(err)
	}
}

// Device is the device the golden tests run the model on.
func Device(t testing.TB) (runtime.Device, int) {
	t.Helper()
	d, id, err := runtime.ParseDevice(os.Getenv(DeviceEnv))
	if err != nil {
		t.Fatalf("%s: %v", DeviceEnv, err)
	}
	return d, id
}

var (
	once sync.Once
	tmp  string
	dir  string
	err  error
)

// Dir returns the exported golden model, exporting it on the first call.
func Dir(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		ck, e := gpt2.OpenCheckpoint(golden.ModelDir())
		if e != nil {
			err = e
			return
		}
		if tmp, err = os.MkdirTemp("", "onnx-tdb-golden-"); err != nil {
			return
		}
		dir = filepath.Join(tmp, "golden")
		_, err = export.Write(context.Background(), ck, dir, export.WriteOptions{Name: "golden"})
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Cleanup removes the export; call it from TestMain after the tests ran.
func Cleanup() {
	if tmp != "" {
		os.RemoveAll(tmp)
	}
}
