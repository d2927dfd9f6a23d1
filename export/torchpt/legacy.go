package torchpt

import (
	"bufio"
	"encoding/binary"
	"io"
	"math/big"

	"github.com/nlpodyssey/gopickle/types"
)

// legacyMagic is the first pickle of a legacy (non-zip) torch.save file.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

const legacyProtocol = 1001

// legacyStorages resolves the persistent ids of a legacy file. Storages are
// named by opaque root keys; old files may also name views of them.
type legacyStorages struct {
	roots map[string]*storageRef
	views map[string]*storageRef
}

// openLegacy reads the legacy format: pickles of the magic number, the
// protocol version, sys_info, the object, and the list of storage keys; then
// each listed storage as an int64 element count and its raw bytes.
func openLegacy(r io.ReaderAt, size int64) (any, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10)
	pos := int64(0)
	next := func(limit int64) ([]byte, error) {
		b, err := readPickle(br, min(limit, size-pos))
		pos += int64(len(b))
		return b, err
	}

	b, err := next(64)
	if err != nil {
		return nil, corruptf("neither a zip archive nor a legacy torch.save file")
	}
	if v, err := unpickle(b, nil); err != nil || !isMagic(v) {
		return nil, corruptf("bad magic number: neither a zip archive nor a legacy torch.save file")
	}
	if b, err = next(64); err != nil {
		return nil, err
	}
	v, err := unpickle(b, nil)
	if err != nil {
		return nil, err
	}
	if n, ok := asInt64(v); !ok || n != legacyProtocol {
		return nil, unsupportedf("legacy protocol version %v", v)
	}
	if b, err = next(1 << 20); err != nil {
		return nil, err
	}
	sysInfo, err := unpickle(b, nil)
	if err != nil {
		return nil, err
	}
	if d, ok := sysInfo.(*types.Dict); ok {
		if little, ok := d.Get("little_endian"); ok && little == false {
			return nil, unsupportedf("big-endian legacy file")
		}
	}

	l := &legacyStorages{roots: map[string]*storageRef{}, views: map[string]*storageRef{}}
	if b, err = next(maxPickleBytes); err != nil {
		return nil, err
	}
	root, err := unpickle(b, l.persistentLoad)
	if err != nil {
		return nil, err
	}
	if b, err = next(maxPickleBytes); err != nil {
		return nil, err
	}
	v, err = unpickle(b, nil)
	if err != nil {
		return nil, err
	}
	keys, ok := v.(*types.List)
	if !ok {
		return nil, corruptf("storage key list is %s", kindOf(v))
	}
	for _, k := range *keys {
		key, _ := k.(string)
		st := l.roots[key]
		if st == nil {
			return nil, corruptf("storage key %q is listed but no tensor uses it", key)
		}
		if st.r != nil {
			return nil, corruptf("storage key %q is listed twice", key)
		}
		var hdr [8]byte
		if _, err := r.ReadAt(hdr[:], pos); err != nil {
			return nil, corruptf("storage %q is truncated", key)
		}
		count := int64(binary.LittleEndian.Uint64(hdr[:]))
		es := int64(st.dt.size)
		avail := size - pos - 8
		if count < 0 || count > avail/es {
			return nil, corruptf("storage %q of %d elements is truncated", key, count)
		}
		if count < st.numel {
			return nil, corruptf("storage %q holds %d elements, its persistent id says %d", key, count, st.numel)
		}
		st.r, st.base = r, pos+8
		pos += 8 + count*es
	}
	return root, nil
}

func isMagic(v any) bool {
	n, ok := v.(*big.Int)
	return ok && n.Cmp(legacyMagic) == 0
}

// persistentLoad handles ('storage', storage_type, root_key, location, numel,
// view_metadata), where view_metadata is None or (view_key, offset, size).
func (l *legacyStorages) persistentLoad(pid any) (any, error) {
	t, ok := pid.(*types.Tuple)
	if !ok || t.Len() < 2 {
		return nil, corruptf("persistent id is %s, want a tuple", kindOf(pid))
	}
	if t.Get(0) == "module" {
		return nil, unsupportedf("pickled nn.Module source in legacy file")
	}
	if t.Get(0) != "storage" || t.Len() != 6 {
		return nil, corruptf("persistent id %v is not a storage 6-tuple", t.Get(0))
	}
	sc, ok1 := t.Get(1).(*storageClass)
	key, ok2 := t.Get(2).(string)
	numel, ok3 := asInt64(t.Get(4))
	if !ok1 || !ok2 || !ok3 || numel < 0 {
		return nil, corruptf("malformed storage persistent id")
	}
	root := l.roots[key]
	if root == nil {
		root = &storageRef{key: key, dt: sc.dt, numel: numel}
		l.roots[key] = root
	} else if root.dt != sc.dt || root.numel != numel {
		return nil, unsupportedf("storage %q named with two types or sizes", key)
	}
	switch vm := t.Get(5).(type) {
	case nil:
		return root, nil
	case *types.Tuple:
		if vm.Len() != 3 {
			return nil, corruptf("storage view metadata has %d items, want 3", vm.Len())
		}
		viewKey, ok1 := vm.Get(0).(string)
		off, ok2 := asInt64(vm.Get(1))
		n, ok3 := asInt64(vm.Get(2))
		if !ok1 || !ok2 || !ok3 || off < 0 || n < 0 || off > numel || n > numel-off {
			return nil, corruptf("storage view metadata %v does not fit storage %q of %d elements", *vm, key, numel)
		}
		if v := l.views[viewKey]; v != nil {
			return v, nil
		}
		v := &storageRef{key: viewKey, dt: sc.dt, numel: n, root: root, rootOffset: off}
		l.views[viewKey] = v
		return v, nil
	}
	return nil, corruptf("storage view metadata is %s", kindOf(t.Get(5)))
}
