// ortc.h: the C shim over the ONNX Runtime C API that the runtime package
// calls through cgo (ortc.c holds the definitions). Every function that can
// fail returns NULL on success or a malloc'd error message the caller frees.
#ifndef ONNX_TDB_ORTC_H
#define ONNX_TDB_ORTC_H

#include <stddef.h>
#include <stdint.h>

typedef struct OrtStatus OrtStatus;
typedef struct OrtEnv OrtEnv;
typedef struct OrtSession OrtSession;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtValue OrtValue;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtThreadingOptions OrtThreadingOptions;
typedef struct OrtPrepackedWeightsContainer OrtPrepackedWeightsContainer;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtRunOptions OrtRunOptions;
typedef struct OrtIoBinding OrtIoBinding;
typedef struct OrtEpDevice OrtEpDevice;
typedef struct OrtHardwareDevice OrtHardwareDevice;
typedef struct OrtAllocator OrtAllocator;

// tdb_malloc_tuning makes large blocks (prepacked weights, activation
// buffers) come from their own mappings, returned to the system when freed,
// instead of glibc's heap, where freed blocks would stay resident.
void tdb_malloc_tuning(void);

void tdb_malloc_trim(void);

char* tdb_init_api(const char* path, uint32_t version);

char* tdb_create_env(int threads, int spin, int log_level, OrtEnv** env);

char* tdb_disable_per_session_threads(OrtSessionOptions* so);

char* tdb_add_initializer(OrtSessionOptions* so, const char* name, const OrtValue* v);

char* tdb_create_container(OrtPrepackedWeightsContainer** out);

void tdb_release_container(OrtPrepackedWeightsContainer* c);

char* tdb_create_session(OrtEnv* env, const void* data, size_t n, const OrtSessionOptions* so, OrtPrepackedWeightsContainer* c, OrtSession** out);

void tdb_release_session(OrtSession* s);

char* tdb_run(OrtSession* s, OrtRunOptions* ro, const char* const* in_names, const OrtValue* const* ins, size_t n_in, const char* const* out_names, size_t n_out, OrtValue** outs);

// tdb_memory_info describes memory of a device ("Cuda", id) for ORT to
// allocate outputs in (OrtDeviceAllocator = 0, OrtMemTypeDefault = 0).
char* tdb_memory_info(const char* name, int id, OrtMemoryInfo** out);

void tdb_release_memory_info(OrtMemoryInfo* m);

// tdb_run_bound runs a session through an IO binding: inputs wherever they
// are, output i allocated by ORT on the device when out_dev[i] is set (it
// stays there for the next session to read), in CPU memory otherwise.
char* tdb_run_bound(OrtSession* s, OrtRunOptions* ro, const char* const* in_names, const OrtValue* const* ins, size_t n_in, const char* const* out_names, const int* out_dev, const OrtMemoryInfo* dev, size_t n_out, OrtValue** outs);

// tdb_register_ep_library loads an execution provider library built as a
// plugin (it exports CreateEpFactories), such as the CUDA provider of
// ONNX Runtime builds whose core has no CUDA in it.
char* tdb_register_ep_library(OrtEnv* env, const char* name, const char* path);

// tdb_find_ep_device returns the index-th device the environment offers for
// an execution provider whose name contains ep (any case) on a GPU (OrtHardwareDeviceType_GPU = 1), its
// device memory (OrtDeviceMemoryType_DEFAULT = 0; NULL where the provider
// uses CPU memory) and how many such devices there are.
char* tdb_find_ep_device(OrtEnv* env, const char* ep, int index, const OrtEpDevice** out, const OrtMemoryInfo** mem, int* count);

char* tdb_append_ep_device(OrtSessionOptions* so, OrtEnv* env, const OrtEpDevice* dev, const char* const* keys, const char* const* vals, size_t n);

char* tdb_create_run_options(OrtRunOptions** out);

char* tdb_terminate(OrtRunOptions* ro);

void tdb_release_run_options(OrtRunOptions* ro);

char* tdb_tensor(void* data, size_t nbytes, const int64_t* shape, size_t rank, int elem, OrtValue** out);

void tdb_release_value(OrtValue* v);

// tdb_describe fills rank (<= 16), dims, element type and data pointer.
char* tdb_describe(OrtValue* v, int64_t* dims, size_t* rank, int* elem, void** data);

// tdb_probe dlopens path and returns its version string (NULL with *err set
// on failure); *api_ok says whether it serves C API version api.
const char* tdb_probe(const char* path, uint32_t api, int* api_ok, const char** err);

// tdb_mallinfo reports glibc's heap size, the bytes in use in it, and the
// bytes in blocks mapped on their own.
void tdb_mallinfo(size_t* heap, size_t* inuse, size_t* mmapped);

#endif
