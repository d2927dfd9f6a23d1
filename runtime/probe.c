// probe.c: asks a shared library that claims to be ONNX Runtime for its
// version before anything else loads it (see probe.go).
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

#include "ortc.h"

// The first two entries of OrtApiBase, stable across all ONNX Runtime versions.
typedef struct {
	const void* (*GetApi)(uint32_t version);
	const char* (*GetVersionString)(void);
} tdbOrtApiBase;

typedef const tdbOrtApiBase* (*tdbGetApiBaseFn)(void);

const char* tdb_probe(const char* path, uint32_t api, int* api_ok, const char** err) {
	void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) { *err = dlerror(); return NULL; }
	tdbGetApiBaseFn f = (tdbGetApiBaseFn)dlsym(h, "OrtGetApiBase");
	if (!f) { *err = "no OrtGetApiBase symbol"; return NULL; }
	const tdbOrtApiBase* base = f();
	if (!base) { *err = "OrtGetApiBase returned NULL"; return NULL; }
	*api_ok = base->GetApi(api) != NULL;
	return base->GetVersionString();
}
