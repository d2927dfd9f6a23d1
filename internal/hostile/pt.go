package hostile

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"runtime"
)

// File is one hostile file.
type File struct {
	Name string // file name, with its extension
	// Kind says which reader it is for: "tensor" (a checkpoint piece,
	// one tensor), "statedict" (an SAE file) or "config" (config.json).
	Kind  string
	Why   string // what it asks for
	Bytes []byte
}

// PT lists the hostile torch.save files. The largest is about 1 MB.
func PT() []File {
	return []File{
		{"stride0_f32.pt", "tensor", "one float32 broadcast by stride 0 to 32768×32768 (4 GiB)", StrideZero(false)},
		{"stride0_i64.pt", "tensor", "one int64 broadcast by stride 0 to 32768×32768 (8 GiB)", StrideZero(true)},
		{"none_ops.pt", "tensor", "a deflated data.pkl of 48 Mi NONE opcodes (a 48 Mi item pickle stack)", NoneOps(48 << 20)},
		{"deflated_pkl.pt", "statedict", "a deflated data.pkl of 1 GiB (a bytes object of zeros)", DeflatedPickle(1 << 30)},
		{"deflated_storage.pt", "statedict", "a 1 GiB deflated storage read as float32 and int64 (4 GiB of results)", DeflatedStorage(1 << 30)},
		{"many_views.pt", "statedict", "4096 tensors that each view all of one 1 MiB storage (4 GiB of results)", ManyViews(4096, 1<<20)},
	}
}

// ManyViews is a state-dict file of n tensors, each a view of all of one
// stored storage of size bytes.
func ManyViews(n, size int) []byte {
	var p pkl
	p.WriteString("}(")
	for i := range n {
		p.str(fmt.Sprint(i))
		p.tensor("FloatStorage", "0", int64(size/4), []int64{int64(size / 4)}, []int64{1})
	}
	p.WriteByte('u')
	return zipOf(entry{name: "a/data.pkl", data: p.done()}, entry{name: "a/data/0", data: make([]byte, size)})
}

// pkl writes protocol-2 pickle opcodes.
type pkl struct{ bytes.Buffer }

func (p *pkl) global(module, name string) { p.WriteString("c" + module + "\n" + name + "\n") }

func (p *pkl) str(s string) {
	p.WriteByte('X')
	binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
}

func (p *pkl) int(v int64) {
	switch {
	case v >= 0 && v < 1<<8:
		p.Write([]byte{'K', byte(v)})
	case v >= 0 && v < 1<<16:
		p.Write([]byte{'M', byte(v), byte(v >> 8)})
	default:
		p.Write([]byte{0x8a, 8})
		binary.Write(&p.Buffer, binary.LittleEndian, v)
	}
}

// tensor writes _rebuild_tensor_v2(persistent storage key, offset 0, shape,
// stride, False, None).
func (p *pkl) tensor(storage, key string, numel int64, shape, stride []int64) {
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.WriteString("((")
	p.str("storage")
	p.global("torch", storage)
	p.str(key)
	p.str("cpu")
	p.int(numel)
	p.WriteString("tQ")
	p.int(0)
	p.WriteByte('(')
	for _, d := range shape {
		p.int(d)
	}
	p.WriteString("t(")
	for _, s := range stride {
		p.int(s)
	}
	p.WriteString("t\x89NtR")
}

func (p *pkl) done() []byte {
	p.WriteByte('.')
	return append([]byte{0x80, 2}, p.Bytes()...)
}

// entry is one zip member: stored (raw nil) or already deflated (raw set,
// with the size and CRC of what it inflates to).
type entry struct {
	name  string
	data  []byte
	raw   []byte
	size  uint64
	crc32 uint32
}

func zipOf(entries ...entry) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		if e.raw == nil {
			w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Store})
			if err != nil {
				panic(err)
			}
			w.Write(e.data)
			continue
		}
		w, err := zw.CreateRaw(&zip.FileHeader{Name: e.name, Method: zip.Deflate, CRC32: e.crc32,
			CompressedSize64: uint64(len(e.raw)), UncompressedSize64: e.size})
		if err != nil {
			panic(err)
		}
		w.Write(e.raw)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// StrideZero is a 394-byte file: one element broadcast to 32768×32768.
func StrideZero(int64s bool) []byte {
	var p pkl
	storage, data := "FloatStorage", make([]byte, 4)
	if int64s {
		storage, data = "LongStorage", make([]byte, 8)
	}
	p.tensor(storage, "0", 1, []int64{32768, 32768}, []int64{0, 0})
	return zipOf(entry{name: "a/data.pkl", data: p.done()}, entry{name: "a/data/0", data: data})
}

// deflated is a deflate stream of head, then n copies of unit, then tail,
// made without deflating all of it: each part is deflated on its own and
// flushed to a byte boundary, so the unit's stream is repeated as it is.
// It returns the stream, the inflated size and its CRC-32.
func deflated(head, unit []byte, n int, tail []byte) ([]byte, uint64, uint32) {
	part := func(b []byte, final bool) []byte {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		w.Write(b)
		if final {
			w.Close()
		} else {
			w.Flush()
		}
		return buf.Bytes()
	}
	u := part(unit, false)
	out := part(head, false)
	crc := crc32.ChecksumIEEE(head)
	for range n {
		out = append(out, u...)
		crc = crc32.Update(crc, crc32.IEEETable, unit)
	}
	out = append(out, part(tail, true)...)
	crc = crc32.Update(crc, crc32.IEEETable, tail)
	return out, uint64(len(head)) + uint64(n)*uint64(len(unit)) + uint64(len(tail)), crc
}

const mib = 1 << 20

// NoneOps is a file whose data.pkl is nones NONE opcodes (a multiple of
// 1 MiB), deflated: 48 Mi of them take about 49 kB.
func NoneOps(nones int) []byte {
	unit := bytes.Repeat([]byte{'N'}, mib)
	raw, size, crc := deflated([]byte{0x80, 2}, unit, nones/mib, []byte{'.'})
	return zipOf(entry{name: "a/data.pkl", raw: raw, size: size, crc32: crc})
}

// DeflatedPickle is a state-dict file whose data.pkl holds a bytes object
// of n zeros (a multiple of 1 MiB), deflated.
func DeflatedPickle(n int) []byte {
	head := []byte{0x80, 2, '}', 'X', 1, 0, 0, 0, 'b', 0x8e}
	head = binary.LittleEndian.AppendUint64(head, uint64(n))
	raw, size, crc := deflated(head, make([]byte, mib), n/mib, []byte("s."))
	return zipOf(entry{name: "a/data.pkl", raw: raw, size: size, crc32: crc})
}

// DeflatedStorage is a state-dict file with one storage of n zero bytes (a
// multiple of 1 MiB), deflated, read by two tensors: as float32 and as int64.
func DeflatedStorage(n int) []byte {
	var p pkl
	p.WriteString("}(")
	p.str("f")
	p.tensor("FloatStorage", "0", int64(n/4), []int64{int64(n / 4)}, []int64{1})
	p.str("i")
	p.tensor("LongStorage", "0", int64(n/8), []int64{int64(n / 8)}, []int64{1})
	p.WriteByte('u')
	raw, size, crc := deflated(nil, make([]byte, mib), n/mib, nil)
	return zipOf(entry{name: "a/data.pkl", data: p.done()},
		entry{name: "a/data/0", raw: raw, size: size, crc32: crc})
}

// MaxAlloc is the most a reader may allocate, in total, while refusing one
// of these files.
const MaxAlloc = 200 << 20

// Allocated runs f and returns the bytes the process allocated meanwhile
// (runtime.MemStats.TotalAlloc: every allocation, freed or not, so it bounds
// the peak from above).
func Allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
