package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// Errors callers may branch on.
var (
	// ErrFormat is returned for bytes that are not a well-formed safetensors
	// file (a header that lies about its length, offsets or shapes).
	ErrFormat = errors.New("not a valid safetensors file")
	// ErrNoTensor is returned for a tensor name the file does not hold.
	ErrNoTensor = errors.New("no such tensor")
	// ErrDType is returned when a tensor's dtype cannot be read as float32.
	ErrDType = errors.New("unsupported dtype")
)

// MaxHeaderBytes bounds the JSON header (the format's own readers refuse
// headers over 100 MB).
const MaxHeaderBytes = 100 << 20

// elemSize is the byte width of each dtype the format defines.
var elemSize = map[string]int64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// Info describes one tensor of a file.
type Info struct {
	Name  string
	DType string
	Shape []int
	Begin int64 // byte offset in the data section
	End   int64 // exclusive
}

// Numel is the number of elements.
func (i Info) Numel() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// Header is a parsed, validated header.
type Header struct {
	Tensors  map[string]Info
	Metadata map[string]string
	names    []string
}

// Names lists the tensors in data order.
func (h *Header) Names() []string { return append([]string(nil), h.names...) }

// ParseHeader parses and validates the JSON header of a file whose data
// section holds dataLen bytes. Every tensor must lie inside the data
// section, have a byte length that matches its dtype and shape, and overlap
// no other tensor.
func ParseHeader(js []byte, dataLen int64) (*Header, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	h := &Header{Tensors: make(map[string]Info, len(raw))}
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &h.Metadata); err != nil {
				return nil, fmt.Errorf("%w: __metadata__ must map strings to strings: %v", ErrFormat, err)
			}
			continue
		}
		info, err := parseEntry(name, msg, dataLen)
		if err != nil {
			return nil, err
		}
		h.Tensors[name] = info
		h.names = append(h.names, name)
	}
	sort.Slice(h.names, func(i, j int) bool {
		a, b := h.Tensors[h.names[i]], h.Tensors[h.names[j]]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.Name < b.Name
	})
	for i := 1; i < len(h.names); i++ {
		prev, cur := h.Tensors[h.names[i-1]], h.Tensors[h.names[i]]
		if cur.Begin < prev.End {
			return nil, fmt.Errorf("%w: tensors %s and %s overlap", ErrFormat, prev.Name, cur.Name)
		}
	}
	return h, nil
}

func parseEntry(name string, msg json.RawMessage, dataLen int64) (Info, error) {
	var e struct {
		DType   string  `json:"dtype"`
		Shape   []int64 `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(msg, &e); err != nil {
		return Info{}, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
	}
	size, ok := elemSize[e.DType]
	if !ok {
		return Info{}, fmt.Errorf("%w: tensor %q has unknown dtype %q", ErrFormat, name, e.DType)
	}
	if len(e.Offsets) != 2 || e.Offsets[0] < 0 || e.Offsets[1] < e.Offsets[0] || e.Offsets[1] > dataLen {
		return Info{}, fmt.Errorf("%w: tensor %q has offsets %v outside the %d data bytes", ErrFormat, name, e.Offsets, dataLen)
	}
	n := size
	shape := make([]int, len(e.Shape))
	for i, d := range e.Shape {
		if d < 0 || (d > 0 && n > math.MaxInt64/d) {
			return Info{}, fmt.Errorf("%w: tensor %q has shape %v", ErrFormat, name, e.Shape)
		}
		n *= d
		shape[i] = int(d)
	}
	if n != e.Offsets[1]-e.Offsets[0] {
		return Info{}, fmt.Errorf("%w: tensor %q of %s%v needs %d bytes, its offsets span %d", ErrFormat, name, e.DType, e.Shape, n, e.Offsets[1]-e.Offsets[0])
	}
	return Info{Name: name, DType: e.DType, Shape: shape, Begin: e.Offsets[0], End: e.Offsets[1]}, nil
}

// File is an open safetensors file. It is safe for concurrent reads.
type File struct {
	*Header
	path      string
	f         *os.File
	dataStart int64
}

// Open opens and validates a safetensors file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open safetensors: %w", err)
	}
	sf, err := newFile(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return sf, nil
}

func newFile(f *os.File, path string) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open safetensors %s: %w", path, err)
	}
	var lenBuf [8]byte
	if _, err := io.ReadFull(f, lenBuf[:]); err != nil {
		return nil, fmt.Errorf("%w: %s: %d bytes, too short for a header", ErrFormat, path, st.Size())
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderBytes || int64(n) > st.Size()-8 {
		return nil, fmt.Errorf("%w: %s: header of %d bytes in a file of %d", ErrFormat, path, n, st.Size())
	}
	js := make([]byte, n)
	if _, err := io.ReadFull(f, js); err != nil {
		return nil, fmt.Errorf("read safetensors header %s: %w", path, err)
	}
	h, err := ParseHeader(js, st.Size()-8-int64(n))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Header: h, path: path, f: f, dataStart: 8 + int64(n)}, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Raw returns a tensor's bytes as stored.
func (f *File) Raw(name string) (Info, []byte, error) {
	info, ok := f.Tensors[name]
	if !ok {
		return Info{}, nil, fmt.Errorf("%w %q in %s", ErrNoTensor, name, f.path)
	}
	b := make([]byte, info.End-info.Begin)
	if _, err := f.f.ReadAt(b, f.dataStart+info.Begin); err != nil {
		return Info{}, nil, fmt.Errorf("read %s from %s: %w", name, f.path, err)
	}
	return info, b, nil
}

// Float32 reads a floating-point tensor widened to float32 (F32, F16,
// BF16; F64 narrowed), in C order, with its shape.
func (f *File) Float32(name string) ([]float32, []int, error) {
	info, b, err := f.Raw(name)
	if err != nil {
		return nil, nil, err
	}
	out, err := ToFloat32(info.DType, b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s in %s: %w", name, f.path, err)
	}
	return out, info.Shape, nil
}

// ToFloat32 converts little-endian data of a floating-point dtype.
func ToFloat32(dtype string, b []byte) ([]float32, error) {
	switch dtype {
	case "F32":
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	case "F16":
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = HalfToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out, nil
	case "BF16":
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
		return out, nil
	case "F64":
		out := make([]float32, len(b)/8)
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w %s: want F32, F16, BF16 or F64", ErrDType, dtype)
}

// HalfToFloat32 widens an IEEE 754 binary16 value.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalise
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (frac&0x3ff)<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}
