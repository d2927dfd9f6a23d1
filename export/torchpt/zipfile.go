package torchpt

import (
	"archive/zip"
	"bufio"
	"bytes"
	"io"
	"math"
	"path"
	"strings"

	"github.com/nlpodyssey/gopickle/types"
)

// maxPickleBytes bounds the pickle part of a file (data.pkl, or one pickle of
// the legacy stream); real ones are a few kB.
const maxPickleBytes = 1 << 30

// openFile unpickles the top-level object of a torch.save file, in either
// format. Storages in the result know where their bytes are.
func openFile(r io.ReaderAt, size int64) (any, error) {
	head := make([]byte, min(size, 512))
	if _, err := r.ReadAt(head, 0); err != nil && err != io.EOF {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return openZip(r, size)
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return nil, unsupportedf("legacy tar format (torch < 0.4)")
	case len(head) == 0:
		return nil, corruptf("empty file")
	}
	return openLegacy(r, size)
}

// zipStorages resolves the persistent ids of a zip-format file: storage key k
// is the entry <top>/data/k.
type zipStorages struct {
	r        io.ReaderAt
	size     int64
	files    map[string]*zip.File
	prefix   string // "<top>/"
	storages map[string]*storageRef
}

func openZip(r io.ReaderAt, size int64) (any, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, corruptf("zip: %v", err)
	}
	z := &zipStorages{r: r, size: size, files: make(map[string]*zip.File, len(zr.File)),
		storages: make(map[string]*storageRef)}
	for _, f := range zr.File {
		if _, dup := z.files[f.Name]; !dup {
			z.files[f.Name] = f
		}
		dir, base := path.Split(f.Name)
		if base == "data.pkl" && z.prefix == "" && strings.Count(dir, "/") == 1 && dir != "/" {
			z.prefix = dir // the top folder is arbitrary: "archive/", or the file stem
		}
	}
	for name := range z.files {
		if path.Base(name) == "constants.pkl" || (z.prefix != "" && strings.HasPrefix(name, z.prefix+"code/")) {
			return nil, unsupportedf("TorchScript archive (torch.jit.save)")
		}
	}
	if z.prefix == "" {
		return nil, corruptf("zip has no <top>/data.pkl entry")
	}
	if f := z.files[z.prefix+"byteorder"]; f != nil {
		b, err := readEntry(f, 64)
		if err != nil {
			return nil, err
		}
		if order := strings.TrimSpace(string(b)); order != "little" {
			return nil, unsupportedf("byte order %q", order)
		}
	}
	pkl, err := readEntry(z.files[z.prefix+"data.pkl"], maxPickleBytes)
	if err != nil {
		return nil, err
	}
	data, err := readPickle(bufio.NewReader(bytes.NewReader(pkl)), int64(len(pkl)))
	if err != nil {
		return nil, err
	}
	return unpickle(data, z.persistentLoad)
}

// readEntry reads a whole zip entry (checking its CRC) of at most limit bytes.
func readEntry(f *zip.File, limit int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, corruptf("zip entry %s: %v", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, corruptf("zip entry %s: %v", f.Name, err)
	}
	if int64(len(b)) > limit {
		return nil, corruptf("zip entry %s is larger than %d bytes", f.Name, limit)
	}
	return b, nil
}

// persistentLoad handles ('storage', storage_type, key, location, numel).
func (z *zipStorages) persistentLoad(pid any) (any, error) {
	t, ok := pid.(*types.Tuple)
	if !ok || t.Len() != 5 {
		return nil, corruptf("persistent id is %s, want a 5-tuple", kindOf(pid))
	}
	if t.Get(0) != "storage" {
		return nil, unsupportedf("persistent id of type %v", t.Get(0))
	}
	sc, ok1 := t.Get(1).(*storageClass)
	key, ok2 := t.Get(2).(string)
	numel, ok3 := asInt64(t.Get(4))
	if !ok1 || !ok2 || !ok3 {
		return nil, corruptf("malformed storage persistent id")
	}
	// The same key is one storage; a second dtype reinterprets its bytes.
	id := key + "\x00" + sc.dt.name
	if st := z.storages[id]; st != nil {
		return st, nil
	}
	name := z.prefix + "data/" + key
	f := z.files[name]
	if f == nil {
		return nil, corruptf("missing data entry %s", name)
	}
	es := int64(sc.dt.size)
	if numel < 0 || numel > math.MaxInt64/es || uint64(numel*es) > f.UncompressedSize64 {
		return nil, corruptf("data entry %s holds %d bytes, storage of %d %s needs more",
			name, f.UncompressedSize64, numel, sc.dt.name)
	}
	st := &storageRef{key: key, dt: sc.dt, numel: numel}
	need := numel * es
	if f.Method == zip.Store && f.CompressedSize64 == f.UncompressedSize64 {
		off, err := f.DataOffset()
		if err != nil {
			return nil, corruptf("data entry %s: %v", name, err)
		}
		if off < 0 || off > z.size || need > z.size-off {
			return nil, corruptf("data entry %s is truncated", name)
		}
		st.r, st.base = z.r, off
	} else {
		// Not how torch writes, but valid zip: decompress it whole.
		rc, err := f.Open()
		if err != nil {
			return nil, corruptf("data entry %s: %v", name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, need))
		rc.Close()
		if err != nil {
			return nil, corruptf("data entry %s: %v", name, err)
		}
		if int64(len(b)) < need {
			return nil, corruptf("data entry %s is truncated", name)
		}
		st.r = bytes.NewReader(b)
	}
	z.storages[id] = st
	return st, nil
}
