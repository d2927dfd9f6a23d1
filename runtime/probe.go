package runtime

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

// The first two entries of OrtApiBase, stable across all ONNX Runtime versions.
typedef struct {
	const void* (*GetApi)(uint32_t version);
	const char* (*GetVersionString)(void);
} tdbOrtApiBase;

typedef const tdbOrtApiBase* (*tdbGetApiBaseFn)(void);

static const char* tdb_probe(const char* path, uint32_t api, int* api_ok, char** err) {
	void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) { *err = dlerror(); return NULL; }
	tdbGetApiBaseFn f = (tdbGetApiBaseFn)dlsym(h, "OrtGetApiBase");
	if (!f) { *err = "no OrtGetApiBase symbol"; return NULL; }
	const tdbOrtApiBase* base = f();
	if (!base) { *err = "OrtGetApiBase returned NULL"; return NULL; }
	*api_ok = base->GetApi(api) != NULL;
	return base->GetVersionString();
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// probeLibrary dlopens the library and asks it for its version and whether
// it serves C API version api. The handle stays open: onnxruntime_go opens
// the same file next, which then reuses it.
func probeLibrary(path string, api int) (version string, apiOK bool, err error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ok C.int
	var cerr *C.char
	v := C.tdb_probe(cpath, C.uint32_t(api), &ok, &cerr)
	if v == nil {
		msg := "cannot load"
		if cerr != nil {
			msg = C.GoString(cerr)
		}
		return "", false, errors.New(msg)
	}
	return C.GoString(v), ok != 0, nil
}
