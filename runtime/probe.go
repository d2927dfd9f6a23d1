package runtime

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "ortc.h"
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
	var cerr *C.char // static or dlerror()'s: not freed
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
