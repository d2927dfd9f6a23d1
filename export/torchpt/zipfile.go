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
const maxPickleBytes = 16 << 20

// maxInflateBytes bounds the bytes decompressed from the deflated storages of
// one file. torch stores storages uncompressed; a deflated one is valid zip,
// read for completeness, but a megabyte of it could otherwise ask for
// gigabytes.
const maxInflateBytes = 64 << 20

// maxDeflateRatio is a bound on deflate's compression ratio (1032:1 at best,
// plus room for headers): an entry claiming more is not deflate data.
const maxDeflateRatio = 1100

// openFile unpickles the top-level object of a torch.save file, in either
// format. Storages in the result know where their bytes are. held is what
// the file holds, in bytes: its size, plus what its deflated storages
// inflated to.
func openFile(r io.ReaderAt, size int64) (root any, held int64, err error) {
	head := make([]byte, min(size, 512))
	if _, err := r.ReadAt(head, 0); err != nil && err != io.EOF {
		return nil, 0, err
	}
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return openZip(r, size)
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return nil, 0, unsupportedf("legacy tar format (torch < 0.4)")
	case len(head) == 0:
		return nil, 0, corruptf("empty file")
	}
	root, err = openLegacy(r, size)
	return root, size, err
}

// zipStorages resolves the persistent ids of a zip-format file: storage key k
// is the entry <top>/data/k.
type zipStorages struct {
	r        io.ReaderAt
	size     int64
	files    map[string]*zip.File
	prefix   string // "<top>/"
	storages map[string]*storageRef
	inflated int64 // bytes decompressed from deflated storages so far
}

func openZip(r io.ReaderAt, size int64) (any, int64, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, 0, corruptf("zip: %v", err)
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
			return nil, 0, unsupportedf("TorchScript archive (torch.jit.save)")
		}
	}
	if z.prefix == "" {
		return nil, 0, corruptf("zip has no <top>/data.pkl entry")
	}
	if f := z.files[z.prefix+"byteorder"]; f != nil {
		b, err := readEntry(f, 64)
		if err != nil {
			return nil, 0, err
		}
		if order := strings.TrimSpace(string(b)); order != "little" {
			return nil, 0, unsupportedf("byte order %q", order)
		}
	}
	pkl, err := readEntry(z.files[z.prefix+"data.pkl"], maxPickleBytes)
	if err != nil {
		return nil, 0, err
	}
	data, err := readPickle(bufio.NewReader(bytes.NewReader(pkl)), int64(len(pkl)))
	if err != nil {
		return nil, 0, err
	}
	root, err := unpickle(data, z.persistentLoad)
	return root, size + z.inflated, err
}

// readEntry reads a whole zip entry (checking its CRC) of at most limit bytes.
func readEntry(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, unsupportedf("zip entry %s is larger than %d bytes", f.Name, limit)
	}
	if err := checkRatio(f); err != nil {
		return nil, err
	}
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

// checkRatio refuses a compressed entry whose stated size no deflate stream
// of its compressed size can have.
func checkRatio(f *zip.File) error {
	if f.Method == zip.Store {
		return nil
	}
	if f.UncompressedSize64/maxDeflateRatio > f.CompressedSize64 {
		return corruptf("zip entry %s claims %d bytes from %d compressed ones", f.Name,
			f.UncompressedSize64, f.CompressedSize64)
	}
	return nil
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
		// Not how torch writes, but valid zip: decompress it whole, within
		// the file's budget for such storages.
		if err := checkRatio(f); err != nil {
			return nil, err
		}
		if need > maxInflateBytes-z.inflated {
			return nil, unsupportedf("deflated storages of more than %d bytes (entry %s needs %d; torch stores storages uncompressed)",
				maxInflateBytes, name, need)
		}
		z.inflated += need
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
