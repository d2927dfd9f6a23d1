package torchpt

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// viewPickle is a pickle of _rebuild_tensor_v2 over storage "0" with any
// offset, size and stride, which Save never writes.
func viewPickle(storage string, numel, offset int64, shape, stride []int64) []byte {
	return viewPickleFormat(false, storage, numel, offset, shape, stride)
}

// viewPickleFormat is viewPickle, with the 6-tuple persistent id of the
// legacy format when legacy is set.
func viewPickleFormat(legacy bool, storage string, numel, offset int64, shape, stride []int64) []byte {
	var p pickler
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.b.WriteString("((")
	p.str("storage")
	p.global("torch", storage)
	p.str("0")
	p.str("cpu")
	p.int(numel)
	if legacy {
		p.b.WriteByte('N')
	}
	p.b.WriteString("tQ")
	p.int(offset)
	p.intTuple(shape)
	p.intTuple(stride)
	p.b.WriteString("\x89N")
	p.b.WriteString("tR")
	p.stop()
	return p.b.Bytes()
}

type record struct {
	name string
	data []byte
}

// zipBytes builds a zip of stored records.
func zipBytes(t testing.TB, recs ...record) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, r := range recs {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: r.name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(r.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tensorZip is a torch-style archive of one pickle and storage "0".
func tensorZip(t *testing.T, pkl, storage []byte) []byte {
	return zipBytes(t, record{"archive/data.pkl", pkl}, record{"archive/data/0", storage},
		record{"archive/version", []byte("3\n")})
}

func f32Bytes(n int) []byte {
	b := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(i)))
	}
	return b
}

// legacyBytes builds a legacy-format file: the main pickle, the storage key
// list, and each storage as an element count and bytes.
func legacyBytes(littleEndian bool, main []byte, keys []string, counts []int64, data [][]byte) []byte {
	var out bytes.Buffer
	magic := legacyMagic.Bytes() // big-endian
	le := make([]byte, len(magic))
	for i := range magic {
		le[i] = magic[len(magic)-1-i]
	}
	out.Write(append(append([]byte{0x80, 2, 0x8a, byte(len(le))}, le...), '.'))
	var p pickler
	p.int(legacyProtocol)
	p.stop()
	out.Write(p.b.Bytes())
	p = pickler{}
	if err := p.value(map[string]any{"protocol_version": int64(legacyProtocol), "little_endian": littleEndian}, 0); err != nil {
		panic(err)
	}
	p.stop()
	out.Write(p.b.Bytes())
	out.Write(main)
	p = pickler{}
	list := make([]any, len(keys))
	for i, k := range keys {
		list[i] = k
	}
	if err := p.value(list, 0); err != nil {
		panic(err)
	}
	p.stop()
	out.Write(p.b.Bytes())
	for i, d := range data {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(counts[i]))
		out.Write(n[:])
		out.Write(d)
	}
	return out.Bytes()
}

// legacyViewPickle names storage view "v" = elements [viewOff, viewOff+viewN)
// of root storage "r" of rootN elements, and a tensor over the view.
func legacyViewPickle(rootN, viewOff, viewN, offset int64, shape, stride []int64) []byte {
	var p pickler
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.b.WriteString("((")
	p.str("storage")
	p.global("torch", "FloatStorage")
	p.str("r")
	p.str("cpu")
	p.int(rootN)
	p.str("v")
	p.int(viewOff)
	p.int(viewN)
	p.b.WriteString("\x87tQ")
	p.int(offset)
	p.intTuple(shape)
	p.intTuple(stride)
	p.b.WriteString("\x89NtR")
	p.stop()
	return p.b.Bytes()
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.pt")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readGolden(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(golden.Dir(), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Legacy storage views (view_metadata in the persistent id) are what gopickle
// panics on; they load here.
func TestLegacyStorageView(t *testing.T) {
	// Root of 10 floats 0..9; view = elements [3, 9); tensor = view[1:].reshape(
	// 2, 2).T, i.e. offset 1, size (2, 2), stride (1, 2) within the view.
	main := legacyViewPickle(10, 3, 6, 1, []int64{2, 2}, []int64{1, 2})
	path := writeTemp(t, legacyBytes(true, main, []string{"r"}, []int64{10}, [][]byte{f32Bytes(10)}))
	got, err := LoadTensor(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{4, 6, 5, 7}; !reflect.DeepEqual(got.F32, want) {
		t.Fatalf("got %v, want %v", got.F32, want)
	}
}

func TestCorruptAndUnsupportedInputs(t *testing.T) {
	f16 := readGolden(t, "model_views_misc/f16.pt")
	sae := readGolden(t, "sae/resid_delta_mlp_topk.layer1.pt")
	legacy := readGolden(t, "model_views_misc/legacy.pt")
	tensorFile := readGolden(t, "model/model_pieces/xf_layers.0.ln_1.weight.pt")
	good := viewPickle("FloatStorage", 12, 0, []int64{3, 4}, []int64{4, 1})
	goodLegacy := viewPickleFormat(true, "FloatStorage", 12, 0, []int64{3, 4}, []int64{4, 1})

	type tc struct {
		name  string
		data  []byte
		dict  bool  // load with LoadStateDict
		want  error // ErrCorrupt or ErrUnsupported
		inMsg string
	}
	var cases []tc
	for _, n := range []int{0, 1, 2, 4, 10, 30, 100, len(f16) / 2, len(f16) - 23, len(f16) - 1} {
		cases = append(cases, tc{name: "f16 truncated", data: f16[:n], want: ErrCorrupt})
	}
	for _, n := range []int{5, 1000, 20000, len(sae) - 100, len(sae) - 1} {
		cases = append(cases, tc{name: "sae truncated", data: sae[:n], dict: true, want: ErrCorrupt})
	}
	for n := 0; n < len(legacy); n++ {
		cases = append(cases, tc{name: "legacy truncated", data: legacy[:n], want: ErrCorrupt})
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x20
		return c
	}
	cases = append(cases,
		tc{name: "zip magic flipped", data: flip(f16, 0), want: ErrCorrupt},
		tc{name: "legacy magic flipped", data: flip(legacy, 6), want: ErrCorrupt, inMsg: "magic"},
		tc{name: "not a torch file", data: []byte("hello, world\n"), want: ErrCorrupt},
		tc{name: "missing data entry", data: zipBytes(t, record{"archive/data.pkl", good}), want: ErrCorrupt, inMsg: "missing data entry archive/data/0"},
		tc{name: "missing data.pkl", data: zipBytes(t, record{"archive/data/0", f32Bytes(12)}), want: ErrCorrupt, inMsg: "data.pkl"},
		tc{name: "data entry shorter than storage", data: tensorZip(t, good, f32Bytes(11)), want: ErrCorrupt},
		tc{name: "view past storage end", want: ErrCorrupt, inMsg: "reaches past storage",
			data: tensorZip(t, viewPickle("BFloat16Storage", 27, 8, []int64{4, 5}, []int64{1, 4}), make([]byte, 54))},
		tc{name: "offset past storage end", want: ErrCorrupt,
			data: tensorZip(t, viewPickle("FloatStorage", 12, 12, []int64{1}, []int64{1}), f32Bytes(12))},
		tc{name: "scalar past storage end", want: ErrCorrupt,
			data: tensorZip(t, viewPickle("FloatStorage", 12, 12, nil, nil), f32Bytes(12))},
		tc{name: "overflowing stride", want: ErrCorrupt,
			data: tensorZip(t, viewPickle("FloatStorage", 12, 0, []int64{3, 4}, []int64{math.MaxInt64 / 2, 1}), f32Bytes(12))},
		tc{name: "overflowing shape", want: ErrCorrupt,
			data: tensorZip(t, viewPickle("FloatStorage", 12, 0, []int64{math.MaxInt64, math.MaxInt64}, []int64{0, 0}), f32Bytes(12))},
		tc{name: "negative stride", want: ErrCorrupt, inMsg: "negative stride",
			data: tensorZip(t, viewPickle("FloatStorage", 12, 11, []int64{3, 4}, []int64{-4, 1}), f32Bytes(12))},
		tc{name: "negative size", want: ErrCorrupt, inMsg: "negative size",
			data: tensorZip(t, viewPickle("FloatStorage", 12, 0, []int64{-3, 4}, []int64{4, 1}), f32Bytes(12))},
		tc{name: "negative offset", want: ErrCorrupt,
			data: tensorZip(t, viewPickle("FloatStorage", 12, -1, []int64{3}, []int64{1}), f32Bytes(12))},
		tc{name: "negative storage size", want: ErrCorrupt,
			data: tensorZip(t, viewPickle("FloatStorage", -12, 0, []int64{3}, []int64{1}), f32Bytes(12))},
		tc{name: "sizes and strides differ in length", want: ErrCorrupt,
			data: tensorZip(t, viewPickle("FloatStorage", 12, 0, []int64{3, 4}, []int64{1}), f32Bytes(12))},
		tc{name: "huge broadcast view", want: ErrUnsupported,
			data: tensorZip(t, viewPickle("FloatStorage", 1, 0, []int64{1 << 20, 1 << 20}, []int64{0, 0}), f32Bytes(1))},
		tc{name: "unknown storage type", want: ErrUnsupported, inMsg: "torch.ComplexFloatStorage",
			data: tensorZip(t, viewPickle("ComplexFloatStorage", 6, 0, []int64{6}, []int64{1}), f32Bytes(12))},
		tc{name: "unknown python global", want: ErrUnsupported, inMsg: "os.system",
			data: tensorZip(t, []byte("\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R."), nil)},
		tc{name: "torchscript archive", data: readFile(t, "../../testdata/torchpt/torchscript.pt"), want: ErrUnsupported, inMsg: "TorchScript"},
		tc{name: "big-endian zip", want: ErrUnsupported, inMsg: "byte order",
			data: zipBytes(t, record{"archive/data.pkl", good}, record{"archive/byteorder", []byte("big")}, record{"archive/data/0", f32Bytes(12)})},
		tc{name: "big-endian legacy", want: ErrUnsupported, inMsg: "big-endian",
			data: legacyBytes(false, goodLegacy, []string{"0"}, []int64{12}, [][]byte{f32Bytes(12)})},
		tc{name: "legacy tar", data: tarLike(), want: ErrUnsupported, inMsg: "tar"},
		tc{name: "dict loaded as tensor", data: sae, want: ErrUnsupported, inMsg: "not a tensor"},
		tc{name: "tensor loaded as dict", data: tensorFile, dict: true, want: ErrUnsupported, inMsg: "not a dict"},
		tc{name: "string length past end", want: ErrCorrupt, inMsg: "truncated",
			data: tensorZip(t, []byte("\x80\x02X\xff\xff\xff\x7fabc."), nil)},
		tc{name: "bytes8 length past end", want: ErrCorrupt,
			data: tensorZip(t, []byte("\x80\x02\x8e\xff\xff\xff\xff\xff\xff\xff\xffabc."), nil)},
		tc{name: "frame past end", want: ErrCorrupt,
			data: tensorZip(t, []byte("\x80\x04\x95\x00\x00\x00\x00\x01\x00\x00\x00N."), nil)},
		tc{name: "unknown opcode", want: ErrCorrupt, inMsg: "opcode",
			data: tensorZip(t, []byte("\x80\x02\xff."), nil)},
		tc{name: "pickle without stop", want: ErrCorrupt,
			data: tensorZip(t, []byte("\x80\x02N"), nil)},
		tc{name: "cyclic list", dict: true, want: ErrUnsupported,
			data: tensorZip(t, []byte("\x80\x02}X\x01\x00\x00\x00a]q\x00h\x00as."), nil)},
		tc{name: "exponentially shared lists", dict: true, want: ErrUnsupported, data: tensorZip(t, sharedListsPickle(40), nil)},
		tc{name: "odd DICT items (gopickle panics)", dict: true, want: ErrCorrupt,
			data: tensorZip(t, []byte("\x80\x02(X\x01\x00\x00\x00ad."), nil)},
		tc{name: "empty LONG1", want: ErrUnsupported, data: tensorZip(t, []byte("\x80\x02\x8a\x00."), nil)},
		tc{name: "legacy storage shorter than its id", want: ErrCorrupt,
			data: legacyBytes(true, goodLegacy, []string{"0"}, []int64{11}, [][]byte{f32Bytes(11)})},
		tc{name: "legacy storage count past end", want: ErrCorrupt,
			data: legacyBytes(true, goodLegacy, []string{"0"}, []int64{1 << 60}, [][]byte{f32Bytes(12)})},
		tc{name: "legacy storage never listed", want: ErrCorrupt, inMsg: "no data",
			data: legacyBytes(true, goodLegacy, nil, nil, nil)},
		tc{name: "legacy view past its root", want: ErrCorrupt,
			data: legacyBytes(true, legacyViewPickle(10, 8, 6, 0, []int64{2}, []int64{1}), []string{"r"}, []int64{10}, [][]byte{f32Bytes(10)})},
		tc{name: "tensor past legacy view", want: ErrCorrupt,
			data: legacyBytes(true, legacyViewPickle(10, 3, 4, 0, []int64{5}, []int64{1}), []string{"r"}, []int64{10}, [][]byte{f32Bytes(10)})},
		tc{name: "empty file", data: nil, want: ErrCorrupt},
	)
	for _, c := range cases {
		path := writeTemp(t, c.data)
		var err error
		if c.dict {
			_, err = LoadStateDict(path)
		} else {
			_, err = LoadTensor(path)
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s (%d bytes): got %v, want %v", c.name, len(c.data), err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.inMsg) {
			t.Errorf("%s: error %q should name the file and say %q", c.name, err, c.inMsg)
		}
		if errors.Is(err, errPanic) && !strings.Contains(c.name, "gopickle panics") {
			t.Errorf("%s: only the recover net caught it: %v", c.name, err)
		}
	}
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tarLike is a 512-byte tar header block (the legacy tar format's start).
func tarLike() []byte {
	b := make([]byte, 1024)
	copy(b, "sys_info")
	copy(b[257:], "ustar\x0000")
	return b
}

// sharedListsPickle makes {"a": L_n} with L_i = [L_{i-1}, L_{i-1}]: n levels
// of sharing, 2^n leaves when expanded.
func sharedListsPickle(n int) []byte {
	var b bytes.Buffer
	b.WriteString("\x80\x02}X\x01\x00\x00\x00a")
	b.WriteString("]q\x00") // L_0 = [] in memo 0
	for i := 1; i <= n; i++ {
		b.WriteString("0h\x00h\x00\x86q\x00") // pop; memo0 = (memo0, memo0)
	}
	b.WriteString("s.")
	return b.Bytes()
}

func TestMissingFileIsNotExist(t *testing.T) {
	_, err := LoadTensor(filepath.Join(t.TempDir(), "nope.pt"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
}

// legacyMagic is the number torch writes first in a legacy file.
func TestLegacyMagicValue(t *testing.T) {
	want, _ := new(big.Int).SetString("119547037146038801333356", 10)
	if legacyMagic.Cmp(want) != 0 {
		t.Fatalf("magic %v", legacyMagic)
	}
}

// Controls for the table above: the same crafted files, made well, load.
func TestCraftedFilesLoad(t *testing.T) {
	want := make([]float32, 12)
	for i := range want {
		want[i] = float32(i)
	}
	files := map[string][]byte{
		"zip":    tensorZip(t, viewPickle("FloatStorage", 12, 0, []int64{3, 4}, []int64{4, 1}), f32Bytes(12)),
		"legacy": legacyBytes(true, viewPickleFormat(true, "FloatStorage", 12, 0, []int64{3, 4}, []int64{4, 1}), []string{"0"}, []int64{12}, [][]byte{f32Bytes(12)}),
	}
	v2 := viewPickle("FloatStorage", 12, 0, []int64{3, 4}, []int64{4, 1})
	// The 7-argument _rebuild_tensor_v2 (with a metadata dict) and the old
	// 4-argument _rebuild_tensor.
	files["v2 with metadata"] = tensorZip(t, bytes.Replace(v2, []byte("\x89NtR"), []byte("\x89N}tR"), 1), f32Bytes(12))
	v1 := bytes.Replace(v2, []byte("_rebuild_tensor_v2"), []byte("_rebuild_tensor"), 1)
	files["rebuild_tensor"] = tensorZip(t, bytes.Replace(v1, []byte("\x89NtR"), []byte("tR"), 1), f32Bytes(12))
	for name, data := range files {
		got, err := LoadTensor(writeTemp(t, data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got.Shape, []int{3, 4}) || !reflect.DeepEqual(got.F32, want) {
			t.Errorf("%s: got %v %v", name, got.Shape, got.F32)
		}
	}
	// A broadcast view within the limit loads.
	got, err := LoadTensor(writeTemp(t, tensorZip(t, viewPickle("FloatStorage", 2, 1, []int64{3, 2}, []int64{0, 0}), f32Bytes(2))))
	if err != nil || !reflect.DeepEqual(got.F32, []float32{1, 1, 1, 1, 1, 1}) {
		t.Errorf("broadcast: %v, %v", got, err)
	}
}
