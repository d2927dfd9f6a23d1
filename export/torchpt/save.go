package torchpt

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// Save writes t in torch's zip format (as torch.save of a tensor does, top
// folder "archive/"), loadable by torch.load and by LoadTensor. t must hold
// float32 data (DType "float32" or "" with F32 set) or int64 data (DType
// "int64"). The file is written under a temporary name and renamed.
func Save(path string, t *Tensor) error {
	var p pickler
	if err := p.tensor(t); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	p.stop()
	return writeAtomic(path, &p)
}

// SaveStateDict writes a plain dict, in keys order, as torch.save of a dict
// does. Each key must be in tensors or in values. Values may be string, bool,
// nil, int, int64, int32, float64, float32, []byte, []any, map[string]any
// (written with sorted keys) and *Tensor; tensors are float32 or int64 as for
// Save.
func SaveStateDict(path string, keys []string, tensors map[string]*Tensor, values map[string]any) error {
	var p pickler
	p.b.WriteByte('}')
	if len(keys) > 0 {
		p.b.WriteByte('(')
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			return fmt.Errorf("save %s: key %q repeated", path, k)
		}
		seen[k] = true
		p.str(k)
		var err error
		if t, ok := tensors[k]; ok {
			err = p.tensor(t)
		} else if v, ok := values[k]; ok {
			err = p.value(v, 0)
		} else {
			err = fmt.Errorf("key %q is in neither tensors nor values", k)
		}
		if err != nil {
			return fmt.Errorf("save %s: key %q: %w", path, k, err)
		}
	}
	if len(keys) > 0 {
		p.b.WriteByte('u')
	}
	p.stop()
	return writeAtomic(path, &p)
}

// pickler writes a protocol-2 pickle, as torch.save does, and collects the
// storages it names (keys "0", "1", ...).
type pickler struct {
	b        bytes.Buffer
	storages [][]byte
}

func (p *pickler) stop() {
	data := append([]byte{0x80, 2}, p.b.Bytes()...)
	p.b.Reset()
	p.b.Write(data)
	p.b.WriteByte('.')
}

func (p *pickler) global(module, name string) {
	p.b.WriteString("c" + module + "\n" + name + "\n")
}

func (p *pickler) str(s string) {
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(s)))
	p.b.WriteByte('X')
	p.b.Write(n[:])
	p.b.WriteString(s)
}

func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v < 1<<8:
		p.b.Write([]byte{'K', byte(v)})
	case v >= 0 && v < 1<<16:
		p.b.Write([]byte{'M', byte(v), byte(v >> 8)})
	case v >= math.MinInt32 && v <= math.MaxInt32:
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(v))
		p.b.WriteByte('J')
		p.b.Write(n[:])
	default: // LONG1: 8 bytes of two's complement is always enough for an int64
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(v))
		p.b.Write([]byte{0x8a, 8})
		p.b.Write(n[:])
	}
}

func (p *pickler) intTuple(v []int64) {
	switch len(v) {
	case 0:
		p.b.WriteByte(')')
		return
	case 1, 2, 3:
		for _, x := range v {
			p.int(x)
		}
		p.b.WriteByte([]byte{0x85, 0x86, 0x87}[len(v)-1])
		return
	}
	p.b.WriteByte('(')
	for _, x := range v {
		p.int(x)
	}
	p.b.WriteByte('t')
}

// tensor writes _rebuild_tensor_v2(storage, 0, size, stride, False,
// OrderedDict()) with a new contiguous storage.
func (p *pickler) tensor(t *Tensor) error {
	if t == nil {
		return fmt.Errorf("nil tensor")
	}
	numel := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("negative size in shape %v", t.Shape)
		}
		numel *= int64(d)
	}
	var dt *dtype
	var data []byte
	switch {
	case (t.DType == "float32" || t.DType == "" && len(t.I64) == 0) && int64(len(t.F32)) == numel && len(t.I64) == 0:
		dt, data = dtypeByName("float32"), f32LE(t.F32)
	case (t.DType == "int64" || t.DType == "" && len(t.I64) > 0) && int64(len(t.I64)) == numel && len(t.F32) == 0:
		dt, data = dtypeByName("int64"), i64LE(t.I64)
	case t.DType != "" && t.DType != "float32" && t.DType != "int64":
		return fmt.Errorf("%w: dtype %q (only float32 and int64 are written)", ErrUnsupported, t.DType)
	default:
		return fmt.Errorf("tensor of dtype %q and shape %v holds %d float32 and %d int64 values",
			t.DType, t.Shape, len(t.F32), len(t.I64))
	}
	shape := make([]int64, len(t.Shape))
	stride := make([]int64, len(t.Shape))
	s := int64(1)
	for i := len(t.Shape) - 1; i >= 0; i-- {
		shape[i], stride[i] = int64(t.Shape[i]), s
		s *= max(int64(t.Shape[i]), 1)
	}
	key := strconv.Itoa(len(p.storages))
	p.storages = append(p.storages, data)

	p.global("torch._utils", "_rebuild_tensor_v2")
	p.b.WriteString("((")
	p.str("storage")
	p.global("torch", dt.storage)
	p.str(key)
	p.str("cpu")
	p.int(numel)
	p.b.WriteString("tQ") // TUPLE, BINPERSID
	p.int(0)
	p.intTuple(shape)
	p.intTuple(stride)
	p.b.WriteByte(0x89) // requires_grad False
	p.global("collections", "OrderedDict")
	p.b.WriteString(")R") // backward_hooks OrderedDict()
	p.b.WriteString("tR")
	return nil
}

func (p *pickler) value(v any, depth int) error {
	if depth > maxValueDepth {
		return fmt.Errorf("value nested deeper than %d", maxValueDepth)
	}
	switch x := v.(type) {
	case nil:
		p.b.WriteByte('N')
	case bool:
		if x {
			p.b.WriteByte(0x88)
		} else {
			p.b.WriteByte(0x89)
		}
	case string:
		p.str(x)
	case int:
		p.int(int64(x))
	case int64:
		p.int(x)
	case int32:
		p.int(int64(x))
	case float64:
		p.float(x)
	case float32:
		p.float(float64(x))
	case []byte:
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(x)))
		p.b.WriteByte('B')
		p.b.Write(n[:])
		p.b.Write(x)
	case *Tensor:
		return p.tensor(x)
	case []any:
		p.b.WriteString("](")
		for _, it := range x {
			if err := p.value(it, depth+1); err != nil {
				return err
			}
		}
		p.b.WriteByte('e')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		p.b.WriteString("}(")
		for _, k := range keys {
			p.str(k)
			if err := p.value(x[k], depth+1); err != nil {
				return err
			}
		}
		p.b.WriteByte('u')
	default:
		return fmt.Errorf("%w: value of type %T", ErrUnsupported, v)
	}
	return nil
}

func (p *pickler) float(f float64) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], math.Float64bits(f))
	p.b.WriteByte('G')
	p.b.Write(n[:])
}

func f32LE(v []float32) []byte {
	if nativeLittleEndian {
		return (&Tensor{F32: v}).rawBytes()
	}
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func i64LE(v []int64) []byte {
	if nativeLittleEndian {
		return (&Tensor{I64: v}).rawBytes()
	}
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return b
}

// writeAtomic writes the archive to a temporary file beside path and renames
// it into place.
func writeAtomic(path string, p *pickler) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("save %s: %w", path, err)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = writeArchive(bw, p); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// zipAlign is the alignment torch gives each record's data (its
// PyTorchStreamWriter pads the local header's extra field to 64 bytes).
const zipAlign = 64

// writeArchive writes the records torch.save writes: data.pkl, byteorder,
// data/<key> for each storage, and version, stored uncompressed.
func writeArchive(w io.Writer, p *pickler) error {
	cw := &countingWriter{w: w}
	zw := zip.NewWriter(cw)
	records := []struct {
		name string
		data []byte
	}{{"data.pkl", p.b.Bytes()}, {"byteorder", []byte("little")}}
	for i, s := range p.storages {
		records = append(records, struct {
			name string
			data []byte
		}{"data/" + strconv.Itoa(i), s})
	}
	records = append(records, struct {
		name string
		data []byte
	}{"version", []byte("3\n")})
	for _, rec := range records {
		if err := zw.Flush(); err != nil {
			return err
		}
		name := "archive/" + rec.name
		hdr := &zip.FileHeader{
			Name:               name,
			Method:             zip.Store,
			CRC32:              crc32.ChecksumIEEE(rec.data),
			CompressedSize64:   uint64(len(rec.data)),
			UncompressedSize64: uint64(len(rec.data)),
		}
		// Local header: 30 bytes, the name, then the extra field ("FB", size, padding).
		start := cw.n + 30 + int64(len(name)) + 4
		pad := (zipAlign - start%zipAlign) % zipAlign
		hdr.Extra = make([]byte, 4+pad)
		binary.LittleEndian.PutUint16(hdr.Extra[0:], 0x4246) // "FB"
		binary.LittleEndian.PutUint16(hdr.Extra[2:], uint16(pad))
		for i := 4; i < len(hdr.Extra); i++ {
			hdr.Extra[i] = 'Z'
		}
		fw, err := zw.CreateRaw(hdr)
		if err != nil {
			return err
		}
		if _, err := fw.Write(rec.data); err != nil {
			return err
		}
	}
	return zw.Close()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
