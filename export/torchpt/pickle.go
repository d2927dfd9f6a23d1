package torchpt

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// readPickle reads one pickle from r, up to and including its STOP opcode,
// and returns its bytes. It walks the opcodes and checks every length field
// against the limit bytes that may still be read, so that gopickle never
// allocates a buffer for data that is not there. It does not run the pickle.
//
// It also follows the depth of the unpickler's stack and the number of memo
// entries, so that a few kilobytes of pickle cannot ask for gigabytes of
// stack (millions of NONE opcodes) or memo.
func readPickle(r *bufio.Reader, limit int64) ([]byte, error) {
	s := pickleScanner{r: r, limit: limit}
	for {
		op, err := s.byte()
		if err != nil {
			return nil, err
		}
		if err := s.args(op); err != nil {
			return nil, err
		}
		if err := s.stack.step(op); err != nil {
			return nil, err
		}
		if op == '.' {
			return s.buf.Bytes(), nil
		}
	}
}

type pickleScanner struct {
	r     *bufio.Reader
	limit int64
	buf   bytes.Buffer
	stack stackDepth
}

var errPickleTruncated = corruptf("pickle truncated")

func (s *pickleScanner) byte() (byte, error) {
	if int64(s.buf.Len()) >= s.limit {
		return 0, errPickleTruncated
	}
	b, err := s.r.ReadByte()
	if err != nil {
		return 0, errPickleTruncated
	}
	s.buf.WriteByte(b)
	return b, nil
}

// take copies n more bytes and returns them.
func (s *pickleScanner) take(n uint64) ([]byte, error) {
	if n > uint64(s.limit-int64(s.buf.Len())) {
		return nil, errPickleTruncated
	}
	start := s.buf.Len()
	if _, err := io.CopyN(&s.buf, s.r, int64(n)); err != nil {
		return nil, errPickleTruncated
	}
	return s.buf.Bytes()[start:], nil
}

// line copies bytes up to and including the next newline.
func (s *pickleScanner) line() error {
	for {
		b, err := s.byte()
		if err != nil {
			return err
		}
		if b == '\n' {
			return nil
		}
	}
}

// counted reads a little-endian length of width bytes (signed when signed is
// set) and then that many bytes.
func (s *pickleScanner) counted(width int, signed bool) error {
	b, err := s.take(uint64(width))
	if err != nil {
		return err
	}
	var n uint64
	switch width {
	case 1:
		n = uint64(b[0])
	case 4:
		n = uint64(binary.LittleEndian.Uint32(b))
		if signed && int32(n) < 0 {
			return corruptf("pickle has a negative length")
		}
	case 8:
		n = binary.LittleEndian.Uint64(b)
	}
	_, err = s.take(n)
	return err
}

// args consumes the argument of opcode op (see Python's pickletools).
func (s *pickleScanner) args(op byte) error {
	switch op {
	// No argument.
	case '(', '.', '0', '1', '2', 'N', 'Q', 0x88, 0x89, 'R', 'b', 'a', 'e', 'd', '}',
		']', ')', 'l', 'o', 's', 'u', 't', 0x85, 0x86, 0x87, 0x81, 0x92, 0x93,
		0x94, 0x8f, 0x90, 0x91, 0x97, 0x98:
		return nil
	// Fixed-size arguments.
	case 'K', 'h', 'q', 0x80, 0x82:
		_, err := s.take(1)
		return err
	case 'M', 0x83:
		_, err := s.take(2)
		return err
	case 'J', 'j', 'r', 0x84:
		_, err := s.take(4)
		return err
	case 'G':
		_, err := s.take(8)
		return err
	case 0x95: // FRAME: its 8-byte size; the framed opcodes follow.
		b, err := s.take(8)
		if err != nil {
			return err
		}
		if binary.LittleEndian.Uint64(b) > uint64(s.limit-int64(s.buf.Len())) {
			return errPickleTruncated
		}
		return nil
	// Newline-terminated arguments.
	case 'I', 'L', 'F', 'S', 'V', 'P', 'g', 'p':
		return s.line()
	case 'c', 'i':
		if err := s.line(); err != nil {
			return err
		}
		return s.line()
	// Counted arguments.
	case 'U', 'C', 0x8c:
		return s.counted(1, false)
	case 0x8a: // LONG1; gopickle cannot decode an empty one, which Python never writes.
		b, err := s.take(1)
		if err != nil {
			return err
		}
		if b[0] == 0 {
			return unsupportedf("empty LONG1 in pickle")
		}
		_, err = s.take(uint64(b[0]))
		return err
	case 0x8b: // LONG4, likewise never empty.
		b, err := s.take(4)
		if err != nil {
			return err
		}
		n := int32(binary.LittleEndian.Uint32(b))
		if n < 0 {
			return corruptf("pickle has a negative length")
		}
		if n == 0 {
			return unsupportedf("empty LONG4 in pickle")
		}
		_, err = s.take(uint64(n))
		return err
	case 'T':
		return s.counted(4, true)
	case 'X', 'B':
		return s.counted(4, false)
	case 0x8d, 0x8e, 0x96:
		return s.counted(8, false)
	}
	return corruptf("unknown pickle opcode 0x%02x", op)
}

// unpickle runs a pickle checked by readPickle with this package's classes.
func unpickle(data []byte, persistentLoad func(any) (any, error)) (any, error) {
	u := pickle.NewUnpickler(bytes.NewReader(data))
	u.FindClass = findClass
	u.PersistentLoad = persistentLoad
	if persistentLoad == nil {
		u.PersistentLoad = func(any) (any, error) {
			return nil, corruptf("unexpected persistent id in pickle")
		}
	}
	v, err := u.Load()
	if err != nil {
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported) {
			return nil, err
		}
		return nil, corruptf("pickle: %v", err)
	}
	return v, nil
}

// findClass resolves the globals a torch.save file may name. gopickle itself
// handles collections.OrderedDict before calling it.
func findClass(module, name string) (any, error) {
	full := module + "." + name
	switch full {
	case "torch._utils._rebuild_tensor_v2":
		return rebuildTensorV2{}, nil
	case "torch._utils._rebuild_tensor":
		return rebuildTensor{}, nil
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		return rebuildParameter{name: name}, nil
	}
	if module == "torch" {
		for i := range dtypes {
			if dtypes[i].storage == name {
				return &storageClass{dt: &dtypes[i]}, nil
			}
		}
		if len(name) > 7 && name[len(name)-7:] == "Storage" {
			return nil, unsupportedf("storage type %s", full)
		}
	}
	return nil, unsupportedf("python global %s", full)
}

// storageClass is a torch.<X>Storage global, as named in a persistent id.
type storageClass struct{ dt *dtype }

// rebuildTensorV2 is torch._utils._rebuild_tensor_v2(storage, storage_offset,
// size, stride, requires_grad, backward_hooks[, metadata]).
type rebuildTensorV2 struct{}

func (rebuildTensorV2) Call(args ...any) (any, error) {
	if len(args) != 6 && len(args) != 7 {
		return nil, corruptf("_rebuild_tensor_v2 takes 6 or 7 arguments, got %d", len(args))
	}
	return newTensorRef(args[0], args[1], args[2], args[3])
}

// rebuildTensor is the older torch._utils._rebuild_tensor(storage,
// storage_offset, size, stride).
type rebuildTensor struct{}

func (rebuildTensor) Call(args ...any) (any, error) {
	if len(args) != 4 {
		return nil, corruptf("_rebuild_tensor takes 4 arguments, got %d", len(args))
	}
	return newTensorRef(args[0], args[1], args[2], args[3])
}

// rebuildParameter is torch._utils._rebuild_parameter(data, requires_grad,
// backward_hooks) and _rebuild_parameter_with_state(..., state): the
// parameter's data is the tensor.
type rebuildParameter struct{ name string }

func (p rebuildParameter) Call(args ...any) (any, error) {
	if len(args) < 3 || len(args) > 4 {
		return nil, corruptf("%s: got %d arguments", p.name, len(args))
	}
	t, ok := args[0].(*tensorRef)
	if !ok {
		return nil, corruptf("%s: data is %s, not a tensor", p.name, kindOf(args[0]))
	}
	return t, nil
}

func newTensorRef(storage, offset, size, stride any) (*tensorRef, error) {
	st, ok := storage.(*storageRef)
	if !ok {
		return nil, corruptf("tensor storage is %s", kindOf(storage))
	}
	off, ok := asInt64(offset)
	if !ok {
		return nil, corruptf("tensor storage offset is %s", kindOf(offset))
	}
	shape, err := intTuple(size, "size")
	if err != nil {
		return nil, err
	}
	strides, err := intTuple(stride, "stride")
	if err != nil {
		return nil, err
	}
	return &tensorRef{st: st, offset: off, shape: shape, stride: strides}, nil
}

func intTuple(v any, what string) ([]int64, error) {
	var items []any
	switch t := v.(type) {
	case *types.Tuple:
		items = *t
	case *types.List:
		items = *t
	default:
		return nil, corruptf("tensor %s is %s, not a tuple", what, kindOf(v))
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, ok := asInt64(it)
		if !ok {
			return nil, corruptf("tensor %s[%d] is %s", what, i, kindOf(it))
		}
		out[i] = n
	}
	return out, nil
}

func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case *big.Int:
		if n.IsInt64() {
			return n.Int64(), true
		}
	}
	return 0, false
}

// kindOf names the Python kind of an unpickled value, for error messages.
func kindOf(v any) string {
	switch t := v.(type) {
	case nil:
		return "None"
	case bool:
		return "a bool"
	case int, *big.Int:
		return "an int"
	case float64:
		return "a float"
	case string:
		return "a str"
	case []byte:
		return "bytes"
	case *types.Tuple:
		return "a tuple"
	case *types.List:
		return "a list"
	case *types.Dict, *types.OrderedDict:
		return "a dict"
	case *tensorRef:
		return "a tensor"
	case *storageRef:
		return "a storage"
	case *types.GenericObject:
		return fmt.Sprintf("a %s.%s object", t.Class.Module, t.Class.Name)
	}
	return fmt.Sprintf("a %T", v)
}
