// ortc.c: the definitions behind ortc.h. The OrtApi table is addressed by
// index: the ONNX Runtime C ABI only appends to it, and the indices below are
// those of API version 24; tdb_init_api checks the alignment with a round
// trip through CreateStatus / GetErrorMessage before anything else runs.
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ortc.h"

// tdb_malloc_tuning makes large blocks (prepacked weights, activation
// buffers) come from their own mappings, returned to the system when freed,
// instead of glibc's heap, where freed blocks would stay resident.
void tdb_malloc_tuning(void) {
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

void tdb_malloc_trim(void) { malloc_trim(0); }

// Indices into the OrtApi function table of ONNX Runtime C API 24.
enum {
	I_CreateStatus = 0,
	I_GetErrorMessage = 2,
	I_CreateSessionFromArray = 8,
	I_Run = 9,
	I_CreateRunOptions = 39,
	I_CreateMemoryInfo = 68,
	I_AllocatorFree = 76,
	I_GetAllocatorWithDefaultOptions = 78,
	I_RunOptionsSetTerminate = 46,
	I_CreateTensorWithDataAsOrtValue = 49,
	I_GetTensorMutableData = 51,
	I_GetTensorElementType = 60,
	I_GetDimensionsCount = 61,
	I_GetDimensions = 62,
	I_GetTensorTypeAndShape = 65,
	I_CreateCpuMemoryInfo = 69,
	I_ReleaseStatus = 93,
	I_ReleaseMemoryInfo = 94,
	I_ReleaseSession = 95,
	I_ReleaseValue = 96,
	I_ReleaseRunOptions = 97,
	I_ReleaseTensorTypeAndShapeInfo = 99,
	I_CreateEnvWithGlobalThreadPools = 119,
	I_RunWithBinding = 133,
	I_CreateIoBinding = 134,
	I_ReleaseIoBinding = 135,
	I_BindInput = 136,
	I_BindOutputToDevice = 138,
	I_GetBoundOutputValues = 140,
	I_DisablePerSessionThreads = 120,
	I_CreateThreadingOptions = 121,
	I_ReleaseThreadingOptions = 122,
	I_SetGlobalIntraOpNumThreads = 147,
	I_SetGlobalInterOpNumThreads = 148,
	I_SetGlobalSpinControl = 149,
	I_AddInitializer = 150,
	I_CreatePrepackedWeightsContainer = 166,
	I_ReleasePrepackedWeightsContainer = 167,
	I_CreateSessionFromArrayWithPrepackedWeightsContainer = 169,
	I_RegisterExecutionProviderLibrary = 301,
	I_GetEpDevices = 303,
	I_SessionOptionsAppendExecutionProvider_V2 = 304,
	I_HardwareDevice_Type = 307,
	I_EpDevice_EpName = 312,
	I_EpDevice_Device = 316,
	I_EpDevice_MemoryInfo = 374,
};

typedef struct {
	const void* (*GetApi)(uint32_t version);
	const char* (*GetVersionString)(void);
} tdbApiBase;

static void* const* tdb_api = NULL;
static OrtMemoryInfo* tdb_cpu_info = NULL;

#define FN(i, T) ((T)tdb_api[i])

// tdb_err turns a status into a malloc'd message (NULL when OK) and frees it.
static char* tdb_err(OrtStatus* st) {
	if (!st) return NULL;
	const char* m = FN(I_GetErrorMessage, const char* (*)(const OrtStatus*))(st);
	char* out = strdup(m ? m : "unknown onnxruntime error");
	FN(I_ReleaseStatus, void (*)(OrtStatus*))(st);
	return out;
}

char* tdb_init_api(const char* path, uint32_t version) {
	void* h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (!h) h = dlopen(path, RTLD_NOW);
	if (!h) return strdup(dlerror());
	const tdbApiBase* (*gb)(void) = (const tdbApiBase* (*)(void))dlsym(h, "OrtGetApiBase");
	if (!gb) return strdup("no OrtGetApiBase symbol");
	const void* api = gb()->GetApi(version);
	if (!api) return strdup("the library does not serve the requested C API version");
	tdb_api = (void* const*)api;
	// Self-check: the table must line up with the indices above.
	OrtStatus* st = FN(I_CreateStatus, OrtStatus* (*)(int, const char*))(1, "tdb-api-check");
	const char* m = FN(I_GetErrorMessage, const char* (*)(const OrtStatus*))(st);
	int ok = m && strcmp(m, "tdb-api-check") == 0;
	FN(I_ReleaseStatus, void (*)(OrtStatus*))(st);
	if (!ok) { tdb_api = NULL; return strdup("OrtApi table does not match the expected layout"); }
	// OrtArenaAllocator = 1, OrtMemTypeDefault = 0
	return tdb_err(FN(I_CreateCpuMemoryInfo, OrtStatus* (*)(int, int, OrtMemoryInfo**))(1, 0, &tdb_cpu_info));
}

char* tdb_create_env(int threads, int spin, int log_level, OrtEnv** env) {
	OrtThreadingOptions* tp = NULL;
	char* e = tdb_err(FN(I_CreateThreadingOptions, OrtStatus* (*)(OrtThreadingOptions**))(&tp));
	if (e) return e;
	e = tdb_err(FN(I_SetGlobalIntraOpNumThreads, OrtStatus* (*)(OrtThreadingOptions*, int))(tp, threads));
	if (!e) e = tdb_err(FN(I_SetGlobalInterOpNumThreads, OrtStatus* (*)(OrtThreadingOptions*, int))(tp, 1));
	if (!e) e = tdb_err(FN(I_SetGlobalSpinControl, OrtStatus* (*)(OrtThreadingOptions*, int))(tp, spin));
	// ORT_LOGGING_LEVEL_ERROR = 3
	if (!e) e = tdb_err(FN(I_CreateEnvWithGlobalThreadPools, OrtStatus* (*)(int, const char*, const OrtThreadingOptions*, OrtEnv**))(log_level, "onnx-tdb", tp, env));
	FN(I_ReleaseThreadingOptions, void (*)(OrtThreadingOptions*))(tp);
	return e;
}

char* tdb_disable_per_session_threads(OrtSessionOptions* so) {
	return tdb_err(FN(I_DisablePerSessionThreads, OrtStatus* (*)(OrtSessionOptions*))(so));
}

char* tdb_add_initializer(OrtSessionOptions* so, const char* name, const OrtValue* v) {
	return tdb_err(FN(I_AddInitializer, OrtStatus* (*)(OrtSessionOptions*, const char*, const OrtValue*))(so, name, v));
}

char* tdb_create_container(OrtPrepackedWeightsContainer** out) {
	return tdb_err(FN(I_CreatePrepackedWeightsContainer, OrtStatus* (*)(OrtPrepackedWeightsContainer**))(out));
}

void tdb_release_container(OrtPrepackedWeightsContainer* c) {
	FN(I_ReleasePrepackedWeightsContainer, void (*)(OrtPrepackedWeightsContainer*))(c);
}

char* tdb_create_session(OrtEnv* env, const void* data, size_t n, const OrtSessionOptions* so,
		OrtPrepackedWeightsContainer* c, OrtSession** out) {
	if (c) {
		return tdb_err(FN(I_CreateSessionFromArrayWithPrepackedWeightsContainer,
			OrtStatus* (*)(const OrtEnv*, const void*, size_t, const OrtSessionOptions*, OrtPrepackedWeightsContainer*, OrtSession**))(env, data, n, so, c, out));
	}
	return tdb_err(FN(I_CreateSessionFromArray,
		OrtStatus* (*)(const OrtEnv*, const void*, size_t, const OrtSessionOptions*, OrtSession**))(env, data, n, so, out));
}

void tdb_release_session(OrtSession* s) { FN(I_ReleaseSession, void (*)(OrtSession*))(s); }

char* tdb_run(OrtSession* s, OrtRunOptions* ro, const char* const* in_names, const OrtValue* const* ins, size_t n_in,
		const char* const* out_names, size_t n_out, OrtValue** outs) {
	return tdb_err(FN(I_Run, OrtStatus* (*)(OrtSession*, const OrtRunOptions*, const char* const*, const OrtValue* const*, size_t,
		const char* const*, size_t, OrtValue**))(s, ro, in_names, ins, n_in, out_names, n_out, outs));
}

// tdb_memory_info describes memory of a device ("Cuda", id) for ORT to
// allocate outputs in (OrtDeviceAllocator = 0, OrtMemTypeDefault = 0).
char* tdb_memory_info(const char* name, int id, OrtMemoryInfo** out) {
	return tdb_err(FN(I_CreateMemoryInfo, OrtStatus* (*)(const char*, int, int, int, OrtMemoryInfo**))(name, 0, id, 0, out));
}

void tdb_release_memory_info(OrtMemoryInfo* m) { FN(I_ReleaseMemoryInfo, void (*)(OrtMemoryInfo*))(m); }

// tdb_run_bound runs a session through an IO binding: inputs wherever they
// are, output i allocated by ORT on the device when out_dev[i] is set (it
// stays there for the next session to read), in CPU memory otherwise.
char* tdb_run_bound(OrtSession* s, OrtRunOptions* ro, const char* const* in_names, const OrtValue* const* ins, size_t n_in,
		const char* const* out_names, const int* out_dev, const OrtMemoryInfo* dev, size_t n_out, OrtValue** outs) {
	OrtIoBinding* b = NULL;
	char* e = tdb_err(FN(I_CreateIoBinding, OrtStatus* (*)(OrtSession*, OrtIoBinding**))(s, &b));
	if (e) return e;
	for (size_t i = 0; !e && i < n_in; i++)
		e = tdb_err(FN(I_BindInput, OrtStatus* (*)(OrtIoBinding*, const char*, const OrtValue*))(b, in_names[i], ins[i]));
	for (size_t i = 0; !e && i < n_out; i++)
		e = tdb_err(FN(I_BindOutputToDevice, OrtStatus* (*)(OrtIoBinding*, const char*, const OrtMemoryInfo*))(b, out_names[i], out_dev[i] ? dev : tdb_cpu_info));
	if (!e) e = tdb_err(FN(I_RunWithBinding, OrtStatus* (*)(OrtSession*, const OrtRunOptions*, const OrtIoBinding*))(s, ro, b));
	OrtAllocator* a = NULL;
	if (!e) e = tdb_err(FN(I_GetAllocatorWithDefaultOptions, OrtStatus* (*)(OrtAllocator**))(&a));
	OrtValue** got = NULL;
	size_t n = 0;
	if (!e) e = tdb_err(FN(I_GetBoundOutputValues, OrtStatus* (*)(const OrtIoBinding*, OrtAllocator*, OrtValue***, size_t*))(b, a, &got, &n));
	if (!e) {
		for (size_t i = 0; i < n; i++) {
			if (i < n_out) outs[i] = got[i];
			else FN(I_ReleaseValue, void (*)(OrtValue*))(got[i]);
		}
		if (got) {
			OrtStatus* st = FN(I_AllocatorFree, OrtStatus* (*)(OrtAllocator*, void*))(a, got);
			if (st) FN(I_ReleaseStatus, void (*)(OrtStatus*))(st);
		}
		if (n != n_out) {
			for (size_t i = 0; i < n && i < n_out; i++) { FN(I_ReleaseValue, void (*)(OrtValue*))(outs[i]); outs[i] = NULL; }
			e = strdup("io binding returned the wrong number of outputs");
		}
	}
	FN(I_ReleaseIoBinding, void (*)(OrtIoBinding*))(b);
	return e;
}

// tdb_register_ep_library loads an execution provider library built as a
// plugin (it exports CreateEpFactories), such as the CUDA provider of
// ONNX Runtime builds whose core has no CUDA in it.
char* tdb_register_ep_library(OrtEnv* env, const char* name, const char* path) {
	return tdb_err(FN(I_RegisterExecutionProviderLibrary, OrtStatus* (*)(OrtEnv*, const char*, const char*))(env, name, path));
}

// tdb_has_word: does s contain w, ignoring ASCII case?
static int tdb_has_word(const char* s, const char* w) {
	size_t n = strlen(w);
	for (; *s; s++) {
		size_t i = 0;
		while (i < n && s[i] && (s[i] | 32) == (w[i] | 32)) i++;
		if (i == n) return 1;
	}
	return 0;
}

// tdb_find_ep_device returns the index-th device the environment offers for
// an execution provider whose name contains ep (any case) on a GPU (OrtHardwareDeviceType_GPU = 1), its
// device memory (OrtDeviceMemoryType_DEFAULT = 0; NULL where the provider
// uses CPU memory) and how many such devices there are.
char* tdb_find_ep_device(OrtEnv* env, const char* ep, int index, const OrtEpDevice** out,
		const OrtMemoryInfo** mem, int* count) {
	const OrtEpDevice* const* devs = NULL;
	size_t n = 0;
	char* e = tdb_err(FN(I_GetEpDevices, OrtStatus* (*)(const OrtEnv*, const OrtEpDevice* const**, size_t*))(env, &devs, &n));
	if (e) return e;
	*out = NULL; *mem = NULL; *count = 0;
	for (size_t i = 0; i < n; i++) {
		const char* name = FN(I_EpDevice_EpName, const char* (*)(const OrtEpDevice*))(devs[i]);
		const OrtHardwareDevice* hw = FN(I_EpDevice_Device, const OrtHardwareDevice* (*)(const OrtEpDevice*))(devs[i]);
		if (!name || !tdb_has_word(name, ep) || !hw) continue;
		if (FN(I_HardwareDevice_Type, int (*)(const OrtHardwareDevice*))(hw) != 1) continue;
		if (*count == index) {
			*out = devs[i];
			*mem = FN(I_EpDevice_MemoryInfo, const OrtMemoryInfo* (*)(const OrtEpDevice*, int))(devs[i], 0);
		}
		(*count)++;
	}
	return NULL;
}

char* tdb_append_ep_device(OrtSessionOptions* so, OrtEnv* env, const OrtEpDevice* dev,
		const char* const* keys, const char* const* vals, size_t n) {
	return tdb_err(FN(I_SessionOptionsAppendExecutionProvider_V2, OrtStatus* (*)(OrtSessionOptions*, OrtEnv*,
		const OrtEpDevice* const*, size_t, const char* const*, const char* const*, size_t))(so, env, &dev, 1, keys, vals, n));
}

char* tdb_create_run_options(OrtRunOptions** out) {
	return tdb_err(FN(I_CreateRunOptions, OrtStatus* (*)(OrtRunOptions**))(out));
}
char* tdb_terminate(OrtRunOptions* ro) {
	return tdb_err(FN(I_RunOptionsSetTerminate, OrtStatus* (*)(OrtRunOptions*))(ro));
}
void tdb_release_run_options(OrtRunOptions* ro) { FN(I_ReleaseRunOptions, void (*)(OrtRunOptions*))(ro); }

char* tdb_tensor(void* data, size_t nbytes, const int64_t* shape, size_t rank, int elem, OrtValue** out) {
	return tdb_err(FN(I_CreateTensorWithDataAsOrtValue,
		OrtStatus* (*)(const OrtMemoryInfo*, void*, size_t, const int64_t*, size_t, int, OrtValue**))(tdb_cpu_info, data, nbytes, shape, rank, elem, out));
}

void tdb_release_value(OrtValue* v) { FN(I_ReleaseValue, void (*)(OrtValue*))(v); }

// tdb_describe fills rank (<= 16), dims, element type and data pointer.
char* tdb_describe(OrtValue* v, int64_t* dims, size_t* rank, int* elem, void** data) {
	OrtTensorTypeAndShapeInfo* info = NULL;
	char* e = tdb_err(FN(I_GetTensorTypeAndShape, OrtStatus* (*)(const OrtValue*, OrtTensorTypeAndShapeInfo**))(v, &info));
	if (e) return e;
	e = tdb_err(FN(I_GetDimensionsCount, OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, size_t*))(info, rank));
	if (!e && *rank > 16) e = strdup("tensor of rank > 16");
	if (!e) e = tdb_err(FN(I_GetDimensions, OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, int64_t*, size_t))(info, dims, *rank));
	if (!e) e = tdb_err(FN(I_GetTensorElementType, OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, int*))(info, elem));
	FN(I_ReleaseTensorTypeAndShapeInfo, void (*)(OrtTensorTypeAndShapeInfo*))(info);
	if (!e) e = tdb_err(FN(I_GetTensorMutableData, OrtStatus* (*)(OrtValue*, void**))(v, data));
	return e;
}

void tdb_mallinfo(size_t* heap, size_t* inuse, size_t* mmapped) {
	struct mallinfo2 mi = mallinfo2();
	*heap = mi.arena;
	*inuse = mi.uordblks;
	*mmapped = mi.hblkhd;
}
