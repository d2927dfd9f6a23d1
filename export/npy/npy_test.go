package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// npyFile hand-builds a .npy file: magic, version, header length (2 bytes
// for 1.0, 4 otherwise), header text and data.
func npyFile(major byte, hdr string, data []byte) []byte {
	b := []byte("\x93NUMPY")
	b = append(b, major, 0)
	if major == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(hdr)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(hdr)))
	}
	b = append(b, hdr...)
	return append(b, data...)
}

func f4bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

func TestWriteToMatchesNumpySaveBytes(t *testing.T) {
	// numpy.save(np.arange(6, dtype=np.float32).reshape(2, 3)), spelled out:
	// the dict (59 bytes), 21-len("2") spaces of room to grow axis 0, spaces
	// to pad the header to 128 bytes, '\n'.
	dict := "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
	want := "\x93NUMPY\x01\x00" + "v\x00" + dict + strings.Repeat(" ", 20) + strings.Repeat(" ", 38) + "\n"
	want += string(f4bytes(0, 1, 2, 3, 4, 5))

	var buf bytes.Buffer
	if err := WriteTo(&buf, []int{2, 3}, []float32{0, 1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	if buf.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", buf.String(), want)
	}
	file, err := os.ReadFile("testdata/f4_2x3.npy")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), file) {
		t.Fatalf("differs from NumPy's own file:\n%q\n%q", buf.Bytes(), file)
	}
}

// Every C-order float32 fixture written by NumPy 1.24 comes out of WriteTo
// byte for byte, headers included.
func TestWriteToMatchesNumpyFixtures(t *testing.T) {
	for _, name := range []string{"f4_2x3", "f4_scalar", "f4_1d", "f4_special", "f4_0x3", "f4_100000x0", "f4_2x1x3x1"} {
		file, err := os.ReadFile("testdata/" + name + ".npy")
		if err != nil {
			t.Fatal(err)
		}
		shape, data, err := ReadFrom(bytes.NewReader(file))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var buf bytes.Buffer
		if err := WriteTo(&buf, shape, data); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(buf.Bytes(), file) {
			t.Errorf("%s: WriteTo gave\n%q\nNumPy wrote\n%q", name, buf.Bytes(), file)
		}
		if len(buf.Bytes())-len(data)*4 != 128 {
			t.Errorf("%s: header is %d bytes, want 128", name, len(buf.Bytes())-len(data)*4)
		}
	}
}

func TestReadNumpyFixtures(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, c := range []struct {
		file  string
		shape []int
		data  []float32
	}{
		{"f4_2x3", []int{2, 3}, []float32{0, 1, 2, 3, 4, 5}},
		{"f4_scalar", []int{}, []float32{1.5}},
		{"f4_1d", []int{3}, []float32{1, -2, 3.25}},
		{"f4_special", []int{6}, []float32{nan, inf, -inf, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32}},
		{"f4_0x3", []int{0, 3}, []float32{}},
		{"f4_100000x0", []int{100000, 0}, []float32{}},
		{"f4_2x1x3x1", []int{2, 1, 3, 1}, []float32{0, 0.25, 0.5, 0.75, 1, 1.25}},
		{"f4_be", []int{2}, []float32{1.5, -2}},
		{"f4_3x2_v2", []int{3, 2}, []float32{0, 1, 2, 3, 4, 5}},
		{"f4_3x2_v3", []int{3, 2}, []float32{0, 1, 2, 3, 4, 5}},
		{"f8_2x2", []int{2, 2}, []float32{0.1, -inf, inf, 2.5}},
		{"i8_3", []int{3}, []float32{0, -7, 1 << 40}},
		{"b1_4", []int{4}, []float32{1, 0, 1, 1}},
		{"python3", []int{2}, []float32{1, 1}},
		{"win64python2", []int{2}, []float32{1, 1}}, // shape written as (2L,)
	} {
		shape, data, err := Read(filepath.Join("testdata", c.file+".npy"))
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if !slices.Equal(shape, c.shape) || shape == nil {
			t.Errorf("%s: shape %v, want %v", c.file, shape, c.shape)
		}
		if c.file == "f4_special" {
			if !math.IsNaN(float64(data[0])) || !sameBits(data[1:], c.data[1:]) {
				t.Errorf("%s: data %v, want %v", c.file, data, c.data)
			}
		} else if !sameBits(data, c.data) {
			t.Errorf("%s: data %v, want %v", c.file, data, c.data)
		}
	}
}

func TestReadRejectsUnsupportedNumpyFiles(t *testing.T) {
	for _, name := range []string{"fortran_2x3", "c8_2"} {
		if _, _, err := Read(filepath.Join("testdata", name+".npy")); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
}

func TestRoundTripThroughFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		shape []int
		n     int
	}{{nil, 1}, {[]int{}, 1}, {[]int{7}, 7}, {[]int{3, 4, 5}, 60}, {[]int{2, 0, 3}, 0}, {[]int{1, 100000}, 100000}} {
		data := make([]float32, c.n)
		for i := range data {
			data[i] = float32(i)*0.37 - 11
		}
		path := filepath.Join(dir, "a.npy")
		if err := Write(path, c.shape, data); err != nil {
			t.Fatal(err)
		}
		shape, got, err := Read(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shape, c.shape) && !(len(shape) == 0 && len(c.shape) == 0) {
			t.Errorf("shape %v, want %v", shape, c.shape)
		}
		if !sameBits(got, data) {
			t.Errorf("shape %v: data differs", c.shape)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "a.npy" {
		t.Errorf("folder holds %v, want only a.npy (no temporary files)", entries)
	}
}

func TestWriteReplacesOnlyWhenComplete(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.npy")
	if err := Write(path, []int{2}, []float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	// A failing write leaves the old file and no temporary file.
	if err := Write(path, []int{3}, []float32{1, 2}); !errors.Is(err, ErrShape) {
		t.Fatalf("err = %v, want ErrShape", err)
	}
	if err := Write(filepath.Join(dir, "missing", "y.npy"), []int{1}, []float32{1}); err == nil {
		t.Fatal("write into a missing folder succeeded")
	}
	_, data, err := Read(path)
	if err != nil || !slices.Equal(data, []float32{1, 2}) {
		t.Fatalf("Read = %v, %v", data, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("folder holds %d entries, want 1", len(entries))
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", st.Mode(), err)
	}
}

func TestWriteToRejectsBadShapes(t *testing.T) {
	for _, c := range []struct {
		shape []int
		n     int
	}{
		{[]int{2, 3}, 5}, {[]int{2, 3}, 7}, {nil, 0}, {nil, 2}, {[]int{-1}, 0}, {[]int{-2, -3}, 6},
		{[]int{math.MaxInt, 2}, 2}, {[]int{1 << 32, 1 << 32, 0}, 0}, {make([]int, 65), 0},
	} {
		var buf bytes.Buffer
		err := WriteTo(&buf, c.shape, make([]float32, c.n))
		if !errors.Is(err, ErrShape) || buf.Len() != 0 {
			t.Errorf("WriteTo(%v, %d values) = %v, wrote %d bytes; want ErrShape and nothing written", c.shape, c.n, err, buf.Len())
		}
	}
}

func TestReadHandWrittenHeaders(t *testing.T) {
	for _, c := range []struct {
		name  string
		major byte
		hdr   string
		data  []byte
		shape []int
		want  []float32
	}{
		{"1-d", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", f4bytes(1, 2, 3), []int{3}, []float32{1, 2, 3}},
		{"scalar", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", f4bytes(-4), []int{}, []float32{-4}},
		{"v2", 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }\n", f4bytes(5, 6), []int{1, 2}, []float32{5, 6}},
		{"v3", 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", f4bytes(7, 8), []int{2}, []float32{7, 8}},
		{"keys reordered, no spaces, no trailing comma", 1, "{'shape':(2,),'descr':'<f4','fortran_order':False}", f4bytes(1, 2), []int{2}, []float32{1, 2}},
		{"double quotes and odd whitespace", 1, "{\"descr\" :\t\"<f4\" ,\n 'fortran_order'\n: False , 'shape' : ( 2 , 1 , ) , }   \n", f4bytes(1, 2), []int{2, 1}, []float32{1, 2}},
		{"u prefix and escapes", 1, `{u'descr': u'\x3cf\64', 'fortran_order': False, 'shape': (1,)}`, f4bytes(3), []int{1}, []float32{3}},
		{"repeated key keeps the last", 1, "{'descr': '|b1', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", f4bytes(9), []int{1}, []float32{9}},
		{"python 2 long", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1L, 2L), }", f4bytes(1, 2), []int{1, 2}, []float32{1, 2}},
		{"parenthesised dims", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': ((2), (1),)}", f4bytes(1, 2), []int{2, 1}, []float32{1, 2}},
		{"<f8", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}", binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.Float64bits(0.5)), math.Float64bits(1e-50)), []int{2}, []float32{0.5, 0}},
		{"<i4", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,)}", []byte{0xff, 0xff, 0xff, 0xff, 16777217 & 0xff, 0, 0, 1}, []int{2}, []float32{-1, 16777216}},
		{"|u1 and |i1", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,)}", []byte{200, 3}, []int{2}, []float32{200, 3}},
		{"empty 1-d", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}", nil, []int{0}, []float32{}},
	} {
		shape, data, err := ReadFrom(bytes.NewReader(npyFile(c.major, c.hdr, c.data)))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !slices.Equal(shape, c.shape) || !sameBits(data, c.want) {
			t.Errorf("%s: got %v %v, want %v %v", c.name, shape, data, c.shape, c.want)
		}
	}
}

func TestReadCorruptAndUnsupported(t *testing.T) {
	good := "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
	d2 := f4bytes(1, 2)
	for _, c := range []struct {
		name string
		file []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"short magic", []byte("\x93NUM"), ErrCorrupt},
		{"bad magic", []byte("\x93NUMPX\x01\x00\x00\x00"), ErrCorrupt},
		{"version 4.0", npyFile(4, good, d2), ErrUnsupported},
		{"version 1.1", append([]byte("\x93NUMPY\x01\x01"), 0, 0), ErrUnsupported},
		{"missing header length", []byte("\x93NUMPY\x02\x00\x01"), ErrCorrupt},
		{"header longer than file", []byte("\x93NUMPY\x01\x00\xff\x00{}"), ErrCorrupt},
		{"header over the limit", []byte("\x93NUMPY\x02\x00\xff\xff\xff\xff"), ErrUnsupported},
		{"empty header", npyFile(1, "", nil), ErrCorrupt},
		{"not a dict", npyFile(1, "('<f4', False, (2,))", d2), ErrCorrupt},
		{"unclosed dict", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", d2), ErrCorrupt},
		{"missing key", npyFile(1, "{'descr': '<f4', 'shape': (2,)}", d2), ErrCorrupt},
		{"extra key", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", d2), ErrCorrupt},
		{"non-string key", npyFile(1, "{1: '<f4', 'fortran_order': False, 'shape': (2,)}", d2), ErrCorrupt},
		{"shape not a tuple", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", d2), ErrCorrupt},
		{"shape (2) is an int", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", d2), ErrCorrupt},
		{"negative dimension", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", d2), ErrCorrupt},
		{"bool dimension", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (True,)}", d2), ErrCorrupt},
		{"float dimension", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}", d2), ErrCorrupt},
		{"huge dimension", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", d2), ErrCorrupt},
		{"overflowing shape", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", d2), ErrCorrupt},
		{"absurd shape, short data", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 100000000)}", d2), ErrCorrupt},
		{"too many dims", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ("+strings.Repeat("1,", 65)+")}", d2), ErrUnsupported},
		{"fortran_order not a bool", npyFile(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", d2), ErrCorrupt},
		{"fortran_order True", npyFile(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,)}", d2), ErrUnsupported},
		{"descr not a string", npyFile(1, "{'descr': 4, 'fortran_order': False, 'shape': (2,)}", d2), ErrCorrupt},
		{"structured descr", npyFile(1, "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (2,)}", d2), ErrUnsupported},
		{"object descr", npyFile(1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,)}", d2), ErrUnsupported},
		{"half descr", npyFile(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (2,)}", d2), ErrUnsupported},
		{"short data", npyFile(1, good, f4bytes(1)), ErrCorrupt},
		{"data cut inside a value", npyFile(1, good, d2[:6]), ErrCorrupt},
		{"garbage after the dict", npyFile(1, good+" x", d2), ErrCorrupt},
		{"unterminated string", npyFile(1, "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", d2), ErrCorrupt},
		{"newline in a string", npyFile(1, "{'descr': '<f\n4', 'fortran_order': False, 'shape': (2,)}", d2), ErrCorrupt},
		{"triple quotes", npyFile(1, "{'''descr''': '<f4', 'fortran_order': False, 'shape': (2,)}", d2), ErrCorrupt},
		{"missing colon", npyFile(1, "{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", d2), ErrCorrupt},
		{"double comma", npyFile(1, "{'descr': '<f4',, 'fortran_order': False, 'shape': (2,)}", d2), ErrCorrupt},
		{"L suffix in v3", npyFile(3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,)}", d2), ErrCorrupt},
		{"deep nesting", npyFile(1, strings.Repeat("(", 100000), d2), ErrCorrupt},
		{"unknown name", npyFile(1, "{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}", d2), ErrCorrupt},
		{"NUL byte", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\x00", d2), ErrCorrupt},
	} {
		shape, data, err := ReadFrom(bytes.NewReader(c.file))
		if !errors.Is(err, c.want) || shape != nil || data != nil {
			t.Errorf("%s: got %v, %d values, %v; want %v", c.name, shape, len(data), err, c.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "npy: read: ") {
			t.Errorf("%s: error %q lacks the npy: read: prefix", c.name, err)
		}
	}
}

func TestReadChecksFileSize(t *testing.T) {
	dir := t.TempDir()
	good := "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
	for name, c := range map[string]struct {
		data []byte
		ok   bool
	}{
		"exact":    {f4bytes(1, 2), true},
		"short":    {f4bytes(1), false},
		"trailing": {f4bytes(1, 2, 3), false},
	} {
		path := filepath.Join(dir, name+".npy")
		if err := os.WriteFile(path, npyFile(1, good, c.data), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := Read(path)
		if (err == nil) != c.ok || (!c.ok && !errors.Is(err, ErrCorrupt)) {
			t.Errorf("%s: err = %v", name, err)
		}
		if err != nil && !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
	// A stream may hold more after the array: ReadFrom stops at its end.
	r := bytes.NewReader(append(npyFile(1, good, f4bytes(1, 2, 3)), npyFile(1, good, f4bytes(4, 5))...))
	_, a, err := ReadFrom(r)
	if err != nil || !slices.Equal(a, []float32{1, 2}) {
		t.Fatalf("first ReadFrom = %v, %v", a, err)
	}
	if _, _, err := ReadFrom(r); !errors.Is(err, ErrCorrupt) { // the stray value 3 is not a magic string
		t.Fatalf("second ReadFrom err = %v, want ErrCorrupt", err)
	}
	if _, _, err := Read(filepath.Join(dir, "absent.npy")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
}

func TestReadFromReportsReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	_, _, err := ReadFrom(&failAfter{data: npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", nil), err: boom})
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the reader's error", err)
	}
}

type failAfter struct {
	data []byte
	err  error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func BenchmarkWriteTo1M(b *testing.B) {
	data := make([]float32, 1<<20)
	b.SetBytes(4 << 20)
	for b.Loop() {
		if err := WriteTo(discard{}, []int{1024, 1024}, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadFrom1M(b *testing.B) {
	var buf bytes.Buffer
	if err := WriteTo(&buf, []int{1024, 1024}, make([]float32, 1<<20)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4 << 20)
	for b.Loop() {
		if _, _, err := ReadFrom(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
