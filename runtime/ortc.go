package runtime

// A small shim over the ONNX Runtime C API for what onnxruntime_go does not
// expose: one process-wide thread pool (CreateEnvWithGlobalThreadPools +
// DisablePerSessionThreads), weights shared by every session
// (AddInitializer over one memory map, and one PrepackedWeightsContainer so
// prepacked copies are shared too), and runs whose outputs stay in ONNX
// Runtime's memory instead of being copied into Go.
//
// onnxruntime_go still loads the library, creates the environment and builds
// the session options (threads, execution providers); the shim, in C in
// ortc.c / ortc.h, reaches the same OrtApi table through OrtGetApiBase.

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include <string.h>
#include "ortc.h"
*/
import "C"

import (
	"errors"
	"fmt"
	goruntime "runtime"
	"sync/atomic"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

// apiVersion is the OrtApi version whose table layout the shim uses.
const apiVersion = 24

func cerr(e *C.char) error {
	if e == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(e))
	return errors.New(C.GoString(e))
}

var theEnv *C.OrtEnv

// initShim binds the OrtApi table and creates the process-wide environment
// with one global thread pool of the given size. It runs before
// onnxruntime_go's InitializeEnvironment, whose CreateEnv then returns the
// same (singleton) environment.
func initShim(path string, threads int, spin bool, logLevel int) error {
	C.tdb_malloc_tuning()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	if err := cerr(C.tdb_init_api(cpath, apiVersion)); err != nil {
		return fmt.Errorf("bind onnxruntime C API: %w", err)
	}
	s := 0
	if spin {
		s = 1
	}
	if err := cerr(C.tdb_create_env(C.int(threads), C.int(s), C.int(logLevel), &theEnv)); err != nil {
		return fmt.Errorf("create onnxruntime environment: %w", err)
	}
	return nil
}

// trimHeap returns freed heap memory to the system (after a plan build,
// whose prepacking frees as much as it keeps).
func trimHeap() { C.tdb_malloc_trim() }

// sessionOptionsPtr reaches the OrtSessionOptions inside onnxruntime_go's
// SessionOptions (its only field). Pinned to onnxruntime_go v1.27.0; the
// runtime tests fail if the layout ever changes.
func sessionOptionsPtr(so *ort.SessionOptions) *C.OrtSessionOptions {
	return *(**C.OrtSessionOptions)(unsafe.Pointer(so))
}

func disablePerSessionThreads(so *ort.SessionOptions) error {
	return cerr(C.tdb_disable_per_session_threads(sessionOptionsPtr(so)))
}

func addInitializer(so *ort.SessionOptions, name string, v *value) error {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	// ORT keeps the name's copy; the value must outlive the session.
	return cerr(C.tdb_add_initializer(sessionOptionsPtr(so), cname, v.v))
}

// prepacked is a container of prepacked weights shared by sessions.
type prepacked struct {
	c *C.OrtPrepackedWeightsContainer
}

func newPrepacked() (*prepacked, error) {
	p := &prepacked{}
	if err := cerr(C.tdb_create_container(&p.c)); err != nil {
		return nil, fmt.Errorf("prepacked weights container: %w", err)
	}
	return p, nil
}

func (p *prepacked) release() {
	if p != nil && p.c != nil {
		C.tdb_release_container(p.c)
		p.c = nil
	}
}

// csession is one ORT session created through the shim.
type csession struct {
	s        *C.OrtSession
	inNames  []*C.char
	outNames []*C.char
	// dev, when set, describes the CUDA device's memory, and outDev[i]
	// says output i stays there (runs then go through an IO binding).
	dev    *C.OrtMemoryInfo
	ownDev bool // dev was created for this session (else it is the provider's)
	outDev []C.int
}

// keepOnDevice makes the outputs marked in onDev stay in the device's
// memory: only a later session reads them, so they need not cross to the
// host and back. Outputs not marked (and every output of a session with
// none marked) are returned in CPU memory as before.
func (cs *csession) keepOnDevice(dm deviceMemory, onDev []bool) error {
	any := false
	for _, d := range onDev {
		any = any || d
	}
	if !any {
		return nil
	}
	if len(onDev) != len(cs.outNames) {
		return fmt.Errorf("device placement for %d outputs, session has %d", len(onDev), len(cs.outNames))
	}
	if dm.info != nil {
		cs.dev = dm.info
	} else {
		cname := C.CString(dm.name)
		defer C.free(unsafe.Pointer(cname))
		if err := cerr(C.tdb_memory_info(cname, C.int(dm.id), &cs.dev)); err != nil {
			return fmt.Errorf("%s memory info: %w", dm.name, err)
		}
		cs.ownDev = true
	}
	cs.outDev = make([]C.int, len(onDev))
	for i, d := range onDev {
		if d {
			cs.outDev[i] = 1
			outputsOnDevice.Add(1)
		}
	}
	return nil
}

// outputsOnDevice counts session outputs placed on a device (tests use it).
var outputsOnDevice atomic.Int64

func createSession(model []byte, so *ort.SessionOptions, pp *prepacked) (*csession, error) {
	if len(model) == 0 {
		return nil, errors.New("empty model")
	}
	var c *C.OrtPrepackedWeightsContainer
	if pp != nil {
		c = pp.c
	}
	cs := &csession{}
	data := C.CBytes(model)
	defer C.free(data)
	if err := cerr(C.tdb_create_session(theEnv, data, C.size_t(len(model)), sessionOptionsPtr(so), c, &cs.s)); err != nil {
		return nil, err
	}
	return cs, nil
}

func (cs *csession) setNames(inputs, outputs []string) {
	for _, n := range inputs {
		cs.inNames = append(cs.inNames, C.CString(n))
	}
	for _, n := range outputs {
		cs.outNames = append(cs.outNames, C.CString(n))
	}
}

// setFetch replaces the graph names the outputs are fetched by (same
// count and order as before).
func (cs *csession) setFetch(names []string) {
	for _, p := range cs.outNames {
		C.free(unsafe.Pointer(p))
	}
	cs.outNames = cs.outNames[:0]
	for _, n := range names {
		cs.outNames = append(cs.outNames, C.CString(n))
	}
}

func (cs *csession) release() {
	if cs == nil {
		return
	}
	if cs.s != nil {
		C.tdb_release_session(cs.s)
		cs.s = nil
	}
	for _, p := range append(cs.inNames, cs.outNames...) {
		C.free(unsafe.Pointer(p))
	}
	cs.inNames, cs.outNames = nil, nil
	if cs.dev != nil && cs.ownDev {
		C.tdb_release_memory_info(cs.dev)
	}
	cs.dev = nil
}

// runOptions lets a run be stopped from another goroutine.
type runOptions struct{ ro *C.OrtRunOptions }

func newRunOptions() (*runOptions, error) {
	r := &runOptions{}
	if err := cerr(C.tdb_create_run_options(&r.ro)); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *runOptions) terminate() { cerr(C.tdb_terminate(r.ro)) }

func (r *runOptions) release() {
	if r.ro != nil {
		C.tdb_release_run_options(r.ro)
		r.ro = nil
	}
}

// run feeds inputs (in the session's input order) and returns the outputs
// (in its output order), owned by the caller. Where pre[i] is a value (on a
// session that keeps nothing on a device), ONNX Runtime writes output i into
// its memory and outs[i] is pre[i]; the others it allocates. pre's values stay
// the caller's, also when the run fails.
func (cs *csession) run(ro *runOptions, ins []*value, pre []*value) ([]*value, error) {
	if len(ins) != len(cs.inNames) {
		return nil, fmt.Errorf("session takes %d inputs, got %d", len(cs.inNames), len(ins))
	}
	nIn, nOut := len(ins), len(cs.outNames)
	// C-allocated arrays of C pointers: no Go pointer crosses into C.
	cin := (*[1 << 20]*C.OrtValue)(C.malloc(C.size_t(max(nIn, 1)) * C.size_t(unsafe.Sizeof(uintptr(0)))))[:max(nIn, 1):max(nIn, 1)]
	defer C.free(unsafe.Pointer(&cin[0]))
	cout := (*[1 << 20]*C.OrtValue)(C.malloc(C.size_t(max(nOut, 1)) * C.size_t(unsafe.Sizeof(uintptr(0)))))[:max(nOut, 1):max(nOut, 1)]
	defer C.free(unsafe.Pointer(&cout[0]))
	cinNames := (*[1 << 20]*C.char)(C.malloc(C.size_t(max(nIn, 1)) * C.size_t(unsafe.Sizeof(uintptr(0)))))[:max(nIn, 1):max(nIn, 1)]
	defer C.free(unsafe.Pointer(&cinNames[0]))
	coutNames := (*[1 << 20]*C.char)(C.malloc(C.size_t(max(nOut, 1)) * C.size_t(unsafe.Sizeof(uintptr(0)))))[:max(nOut, 1):max(nOut, 1)]
	defer C.free(unsafe.Pointer(&coutNames[0]))
	for i, v := range ins {
		cin[i] = v.v
		cinNames[i] = cs.inNames[i]
	}
	given := func(i int) bool { return cs.dev == nil && i < len(pre) && pre[i] != nil && pre[i].v != nil }
	for i := 0; i < nOut; i++ {
		cout[i] = nil
		if given(i) {
			cout[i] = pre[i].v
		}
		coutNames[i] = cs.outNames[i]
	}
	var cro *C.OrtRunOptions
	if ro != nil {
		cro = ro.ro
	}
	var err error
	if cs.dev != nil {
		cdev := (*[1 << 20]C.int)(C.malloc(C.size_t(max(nOut, 1)) * C.size_t(unsafe.Sizeof(C.int(0)))))[:max(nOut, 1):max(nOut, 1)]
		defer C.free(unsafe.Pointer(&cdev[0]))
		copy(cdev, cs.outDev)
		err = cerr(C.tdb_run_bound(cs.s, cro, &cinNames[0], &cin[0], C.size_t(nIn), &coutNames[0], &cdev[0], cs.dev, C.size_t(nOut), &cout[0]))
	} else {
		err = cerr(C.tdb_run(cs.s, cro, &cinNames[0], &cin[0], C.size_t(nIn), &coutNames[0], C.size_t(nOut), &cout[0]))
	}
	goruntime.KeepAlive(ins)
	goruntime.KeepAlive(pre)
	if err != nil {
		for i := 0; i < nOut; i++ {
			if cout[i] != nil && !given(i) {
				C.tdb_release_value(cout[i])
			}
		}
		return nil, err
	}
	outs := make([]*value, nOut)
	for i := range outs {
		if given(i) {
			outs[i] = pre[i]
			continue
		}
		v, err := wrapValue(cout[i])
		if err != nil {
			for j := i; j < nOut; j++ {
				if !given(j) {
					C.tdb_release_value(cout[j])
				}
			}
			for j := 0; j < i; j++ {
				if !given(j) {
					outs[j].release()
				}
			}
			return nil, err
		}
		v.dev = cs.dev != nil && cs.outDev[i] != 0
		outs[i] = v
	}
	return outs, nil
}

// Element types (ONNXTensorElementDataType).
const (
	elemFloat = 1
	elemInt64 = 7
	elemBool  = 9
)

// value is an OrtValue holding a tensor, over Go memory (kept alive and
// pinned until release) or ORT's (freed by release).
type value struct {
	v     *C.OrtValue
	shape []int64
	elem  int
	data  unsafe.Pointer
	n     int // elements
	pin   goruntime.Pinner
	keep  any            // the Go slice backing a Go-memory value
	cmem  unsafe.Pointer // C memory backing a small value
	// dev marks a tensor in GPU memory: data is a device pointer, which
	// only sessions may read (f32, i64 and bools give nothing).
	dev bool
}

func numel(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// smallValue is the size under which newValue copies data into C memory
// instead of pinning the Go slice: small slices may share a tiny-allocator
// block with other objects, which the Go runtime does not let us pin safely.
const smallValue = 4096

// newValue wraps a Go slice ([]float32, []int64 or []bool). Large slices are
// pinned and used in place; small ones are copied into C memory.
func newValue(shape []int64, data any) (*value, error) {
	n := numel(shape)
	v := &value{shape: append([]int64(nil), shape...), n: n}
	var ptr unsafe.Pointer
	var size, have int
	switch d := data.(type) {
	case []float32:
		v.elem, size, have = elemFloat, 4, len(d)
		if have > 0 {
			ptr = unsafe.Pointer(&d[0])
		}
	case []int64:
		v.elem, size, have = elemInt64, 8, len(d)
		if have > 0 {
			ptr = unsafe.Pointer(&d[0])
		}
	case []bool:
		v.elem, size, have = elemBool, 1, len(d)
		if have > 0 {
			ptr = unsafe.Pointer(&d[0])
		}
	default:
		return nil, fmt.Errorf("unsupported tensor data %T", data)
	}
	if n < 0 || have < n {
		return nil, fmt.Errorf("shape %v needs %d values, got %d", shape, n, have)
	}
	nbytes := n * size
	if nbytes < smallValue {
		v.copyToC(ptr, nbytes)
	} else {
		v.pin.Pin(ptr)
		v.keep = data
		v.data = ptr
	}
	if err := v.wrap(nbytes); err != nil {
		return nil, err
	}
	return v, nil
}

// newCopiedValue copies float32 data from outside the Go heap (the
// weights' memory map) into C memory the value owns. Unlike a pinned Go
// copy, a value nobody releases is only leaked, never reported by the
// garbage collector.
func newCopiedValue(shape []int64, data unsafe.Pointer) (*value, error) {
	n := numel(shape)
	v := &value{shape: append([]int64(nil), shape...), n: n, elem: elemFloat}
	v.copyToC(data, 4*n)
	if err := v.wrap(4 * n); err != nil {
		return nil, err
	}
	return v, nil
}

// copyToC makes v's data a C copy of nbytes at ptr.
func (v *value) copyToC(ptr unsafe.Pointer, nbytes int) {
	c := C.malloc(C.size_t(max(nbytes, 16)))
	if nbytes > 0 {
		C.memcpy(c, ptr, C.size_t(nbytes))
	}
	v.cmem, v.data = c, c
}

// wrap makes v's OrtValue over its data (nbytes) with its shape and type;
// on failure it frees what v owns.
func (v *value) wrap(nbytes int) error {
	cshape := (*C.int64_t)(C.malloc(C.size_t(max(len(v.shape), 1)) * 8))
	defer C.free(unsafe.Pointer(cshape))
	dims := unsafe.Slice(cshape, max(len(v.shape), 1))
	for i, d := range v.shape {
		dims[i] = C.int64_t(d)
	}
	if err := cerr(C.tdb_tensor(v.data, C.size_t(nbytes), cshape, C.size_t(len(v.shape)), C.int(v.elem), &v.v)); err != nil {
		v.freeData()
		return err
	}
	return nil
}

func (v *value) freeData() {
	if v.cmem != nil {
		C.free(v.cmem)
		v.cmem = nil
	}
	v.pin.Unpin()
	v.keep = nil
}

// newExternalValue wraps float32 data that lives outside the Go heap (the
// weights' memory map).
func newExternalValue(shape []int64, data unsafe.Pointer) (*value, error) {
	n := numel(shape)
	v := &value{shape: append([]int64(nil), shape...), n: n, elem: elemFloat, data: data}
	if err := v.wrap(4 * n); err != nil {
		return nil, err
	}
	return v, nil
}

// wrapValue takes ownership of an ORT-allocated tensor.
func wrapValue(cv *C.OrtValue) (*value, error) {
	var dims [16]C.int64_t
	var rank C.size_t
	var elem C.int
	var data unsafe.Pointer
	if err := cerr(C.tdb_describe(cv, &dims[0], &rank, &elem, &data)); err != nil {
		return nil, fmt.Errorf("output tensor: %w", err)
	}
	v := &value{v: cv, elem: int(elem), data: data}
	for i := 0; i < int(rank); i++ {
		v.shape = append(v.shape, int64(dims[i]))
	}
	v.n = numel(v.shape)
	return v, nil
}

func (v *value) release() {
	if v == nil || v.v == nil {
		return
	}
	C.tdb_release_value(v.v)
	v.v = nil
	v.freeData()
}

func releaseAll(vs []*value) {
	for _, v := range vs {
		v.release()
	}
}

// f32 views a float32 tensor's data (no copy; valid until release).
func (v *value) f32() []float32 {
	if v.elem != elemFloat || v.n == 0 || v.dev {
		return []float32{}
	}
	return unsafe.Slice((*float32)(v.data), v.n)
}

func (v *value) i64() []int64 {
	if v.elem != elemInt64 || v.n == 0 || v.dev {
		return []int64{}
	}
	return unsafe.Slice((*int64)(v.data), v.n)
}

func (v *value) bools() []bool {
	if v.elem != elemBool || v.n == 0 || v.dev {
		return []bool{}
	}
	return unsafe.Slice((*bool)(v.data), v.n)
}

// deviceMemory is where segment outputs kept on a device live: a provider's
// memory description (info, borrowed from its device), or one made by name
// ("Cuda" or "Cpu", and the ordinal).
type deviceMemory struct {
	info *C.OrtMemoryInfo
	name string
	id   int
}

// epDevice is an execution provider's device offered by the environment.
type epDevice struct {
	d   *C.OrtEpDevice
	mem *C.OrtMemoryInfo // its device memory; nil where it uses CPU memory
}

// registerEPLibrary loads a plugin execution provider library under name.
func registerEPLibrary(name, path string) error {
	cname, cpath := C.CString(name), C.CString(path)
	defer C.free(unsafe.Pointer(cname))
	defer C.free(unsafe.Pointer(cpath))
	return cerr(C.tdb_register_ep_library(theEnv, cname, cpath))
}

// findEPDevice returns the index-th GPU device of a provider whose name
// contains ep, and how many there are.
func findEPDevice(ep string, index int) (*epDevice, int, error) {
	cep := C.CString(ep)
	defer C.free(unsafe.Pointer(cep))
	var d *C.OrtEpDevice
	var mem *C.OrtMemoryInfo
	var n C.int
	if err := cerr(C.tdb_find_ep_device(theEnv, cep, C.int(index), &d, &mem, &n)); err != nil {
		return nil, 0, err
	}
	if d == nil {
		return nil, int(n), nil
	}
	return &epDevice{d: d, mem: mem}, int(n), nil
}

// appendEPDevice adds the provider of dev to the session options, with
// provider options.
func appendEPDevice(so *ort.SessionOptions, dev *epDevice, opts map[string]string) error {
	n := len(opts)
	keys := (*[1 << 10]*C.char)(C.malloc(C.size_t(max(n, 1)) * C.size_t(unsafe.Sizeof(uintptr(0)))))[:max(n, 1):max(n, 1)]
	vals := (*[1 << 10]*C.char)(C.malloc(C.size_t(max(n, 1)) * C.size_t(unsafe.Sizeof(uintptr(0)))))[:max(n, 1):max(n, 1)]
	defer C.free(unsafe.Pointer(&keys[0]))
	defer C.free(unsafe.Pointer(&vals[0]))
	i := 0
	for k, v := range opts {
		keys[i], vals[i] = C.CString(k), C.CString(v)
		defer C.free(unsafe.Pointer(keys[i]))
		defer C.free(unsafe.Pointer(vals[i]))
		i++
	}
	return cerr(C.tdb_append_ep_device(sessionOptionsPtr(so), theEnv, dev.d, &keys[0], &vals[0], C.size_t(n)))
}

// MallocStats is glibc's view of C memory: its heap, what is in use in it,
// and the bytes in blocks mapped on their own (large blocks).
func MallocStats() (heap, inUse, mapped int64) {
	var h, u, m C.size_t
	C.tdb_mallinfo(&h, &u, &m)
	return int64(h), int64(u), int64(m)
}
