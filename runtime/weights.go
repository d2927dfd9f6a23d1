package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
)

// weightStore maps a model's external weight files once and wraps each
// initializer as an OrtValue over the mapping (those under copiedWeight over
// a copy in C memory). Every session of the engine
// gets these values through AddInitializer, so the weights are held once,
// however many sessions and plans exist; prepacked copies are shared through
// one PrepackedWeightsContainer.
type weightStore struct {
	maps   map[string][]byte // file -> mapping
	values map[string]*value // initializer name -> value over the mapping
	// tables are the mapped bytes of initializers that only Gather nodes
	// read (embedding tables), whole pages only; see dropTables.
	tables [][]byte
}

func externalInfo(t *onnxpb.TensorProto) (location string, offset, length int64, ok bool) {
	if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
		return "", 0, 0, false
	}
	length = -1
	for _, kv := range t.GetExternalData() {
		switch kv.GetKey() {
		case "location":
			location = kv.GetValue()
		case "offset":
			offset, _ = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			length, _ = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
	}
	return location, offset, length, location != ""
}

// newWeightStore maps the external float32 initializers of m found under dir.
// Other initializers stay in the graphs.
func newWeightStore(m *onnxpb.ModelProto, dir string) (*weightStore, error) {
	ws := &weightStore{maps: map[string][]byte{}, values: map[string]*value{}}
	lookups := gatherTables(m.GetGraph())
	for _, t := range m.GetGraph().GetInitializer() {
		loc, off, length, ok := externalInfo(t)
		if !ok || onnxpb.TensorProto_DataType(t.GetDataType()) != onnxpb.TensorProto_FLOAT {
			continue
		}
		data, ok := ws.maps[loc]
		if !ok {
			var err error
			data, err = mapFile(filepath.Join(dir, loc))
			if err != nil {
				ws.release()
				return nil, err
			}
			ws.maps[loc] = data
		}
		n := int64(4)
		for _, d := range t.GetDims() {
			n *= d
		}
		if length >= 0 && length != n {
			ws.release()
			return nil, fmt.Errorf("weights %s: %s has length %d, its dims need %d bytes", loc, t.GetName(), length, n)
		}
		if off < 0 || off%4 != 0 || off+n > int64(len(data)) {
			ws.release()
			return nil, fmt.Errorf("weights %s: %s at [%d,%d) lies outside the %d-byte file", loc, t.GetName(), off, off+n, len(data))
		}
		var ptr unsafe.Pointer
		if n > 0 {
			ptr = unsafe.Pointer(&data[off])
		} else {
			ptr = unsafe.Pointer(&data[0])
		}
		var v *value
		var err error
		if n < copiedWeight && !lookups[t.GetName()] {
			v, err = newCopiedValue(t.GetDims(), ptr) // see copiedWeight
		} else {
			v, err = newExternalValue(t.GetDims(), ptr)
		}
		if err != nil {
			ws.release()
			return nil, fmt.Errorf("weights %s: %w", t.GetName(), err)
		}
		ws.values[t.GetName()] = v
		if lookups[t.GetName()] {
			page := int64(os.Getpagesize())
			if lo, hi := (off+page-1)/page*page, (off+n)/page*page; hi > lo {
				ws.tables = append(ws.tables, data[lo:hi])
			}
		}
	}
	return ws, nil
}

// copiedWeight is the size under which an initializer is copied out of the
// mapping into the process's memory. Small initializers (biases, norm gains,
// scalars) are not prepacked: kernels read them from where they lie on every
// run. In the mapping each such read maps the file's neighbouring pages
// too: the kernel's fault-around, and, where the page cache holds the file
// in large folios (as it does for a freshly written or read-ahead file on
// recent kernels), the whole folio, up to 2 MiB of the big weights beside
// them. GPT-2 small then kept ~130 MB of its weights file resident after
// every run (0.2x its weights) on top of the packed copies; with a copy of
// its ~0.5 MB of small initializers it keeps none.
const copiedWeight = 1 << 20

// gatherTables names the initializers that Gather nodes read as their data
// and nothing else reads (in the graph or its subgraphs' outer scope).
func gatherTables(g *onnxpb.GraphProto) map[string]bool {
	gathered, other := map[string]bool{}, map[string]bool{}
	var walk func(g *onnxpb.GraphProto)
	walk = func(g *onnxpb.GraphProto) {
		for _, n := range g.GetNode() {
			for i, in := range n.GetInput() {
				if i == 0 && n.GetOpType() == "Gather" && n.GetDomain() == "" {
					gathered[in] = true
				} else {
					other[in] = true
				}
			}
			for _, a := range n.GetAttribute() {
				if a.GetG() != nil {
					walk(a.GetG())
				}
				for _, sg := range a.GetGraphs() {
					walk(sg)
				}
			}
		}
		for _, o := range g.GetOutput() {
			other[o.GetName()] = true
		}
	}
	walk(g)
	for name := range other {
		delete(gathered, name)
	}
	return gathered
}

func mapFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("weights: %s is empty", path)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("weights: map %s: %w", path, err)
	}
	return data, nil
}

// dropResident tells the kernel the mapped pages are not needed now: the
// pages read while prepacking leave the process's resident set (they stay
// in the page cache and come back on the next read).
func (ws *weightStore) dropResident() {
	for _, d := range ws.maps {
		syscall.Madvise(d, syscall.MADV_DONTNEED)
	}
}

// dropTables drops the resident pages of the embedding tables after a run.
// A Gather reads a few rows of its table, but each row it touches maps the
// pages around it too (the kernel's fault-around, ~100 KB a token here):
// over a corpus the whole table would join the process's resident set,
// 0.24x a GPT-2's weights, for rows read once. The pages stay in the page
// cache; a row read again costs a minor fault.
func (ws *weightStore) dropTables() {
	for _, t := range ws.tables {
		syscall.Madvise(t, syscall.MADV_DONTNEED)
	}
}

// pager drops the mapping's resident pages every interval until stopped (and
// once more then); see runPager.
func (ws *weightStore) pager(every time.Duration) (stop func()) {
	return runPager(every, pagerDuty, ws.dropResident)
}

// pagerDuty is the most of its time the pager spends dropping pages: after
// a drop that took d it waits at least d*(1/pagerDuty-1). A drop walks the
// whole mapping and makes every thread of the process flush its TLB; on a
// 2-core VM one over GPT-2 small's weights took longer than 2 ms, so a
// fixed 2 ms tick dropped without pause, and ONNX Runtime, prepacking,
// faulted the same pages in again and again: a plan build took 54 s
// instead of 2.7 s (2.1 million page faults instead of 138 thousand). That
// thrashing had kept the build peak ~0.1x of the weights lower; what keeps
// it low now is that plans share the head's session (withBoundaries).
const pagerDuty = 0.1

// runPager calls drop every interval (longer where drops take long, see
// pagerDuty) until stopped, and once more then.
func runPager(every time.Duration, duty float64, drop func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTimer(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				drop()
				return
			case <-t.C:
				start := time.Now()
				drop()
				wait := time.Duration(float64(time.Since(start)) * (1/duty - 1))
				t.Reset(max(every, wait))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// Bytes is the size of the mapped weight files.
func (ws *weightStore) bytes() int64 {
	var n int64
	for _, d := range ws.maps {
		n += int64(len(d))
	}
	return n
}

func (ws *weightStore) release() error {
	var errs []error
	for _, v := range ws.values {
		v.release()
	}
	ws.values = nil
	for _, d := range ws.maps {
		errs = append(errs, syscall.Munmap(d))
	}
	ws.maps = nil
	return errors.Join(errs...)
}
