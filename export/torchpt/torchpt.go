package torchpt

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Sentinel errors. Every error that this package returns for a file it could
// open wraps one of them (or an I/O error from the operating system).
var (
	// ErrCorrupt: the file is not a well-formed torch.save file (bad magic,
	// truncated, missing data entry, view outside its storage, ...).
	ErrCorrupt = errors.New("corrupt torch.save file")
	// ErrUnsupported: the file is well-formed but holds something this
	// package does not read (TorchScript archive, legacy tar format, an
	// unknown storage type or Python class, big-endian data, or a top-level
	// object of the wrong kind for the function called).
	ErrUnsupported = errors.New("unsupported torch.save content")
)

// Tensor is a tensor read from a .pt file, materialised contiguous in C order.
type Tensor struct {
	// DType is the torch dtype name of the storage: "float32", "float16",
	// "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool".
	DType string
	Shape []int
	// F32 is set for floating dtypes (float16, bfloat16 and float64 are
	// converted to float32: exactly for the 16-bit types, subnormals, ±inf and
	// NaN included; float64 is rounded to nearest).
	F32 []float32
	// I64 is set for integer and bool dtypes (bool as 0 or 1).
	I64 []int64
}

// Numel is the number of elements: the product of Shape (1 for a scalar).
func (t *Tensor) Numel() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// StateDict is a file whose top-level object is a dict or OrderedDict.
type StateDict struct {
	// Keys lists every top-level key, tensors and other values, in file order.
	Keys []string
	// Tensors holds the top-level tensor values.
	Tensors map[string]*Tensor
	// Values holds the other top-level values: string, int64, float64, bool,
	// nil, []byte, map[string]any (nested dicts; integer keys become their
	// decimal string), []any (lists and tuples). Tensors nested inside them
	// appear as *Tensor.
	Values map[string]any
}

// LoadTensor reads a file whose top-level object is one tensor (a TDB
// model_pieces/*.pt file). A file holding anything else fails with
// ErrUnsupported.
func LoadTensor(path string) (*Tensor, error) {
	var t *Tensor
	err := withFile(path, func(r io.ReaderAt, size int64) error {
		var err error
		t, err = loadTensor(r, size)
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// LoadStateDict reads a file whose top-level object is a dict or an
// OrderedDict with string keys (an SAE file). A file holding anything else
// fails with ErrUnsupported.
func LoadStateDict(path string) (*StateDict, error) {
	var sd *StateDict
	err := withFile(path, func(r io.ReaderAt, size int64) error {
		var err error
		sd, err = loadStateDict(r, size)
		return err
	})
	if err != nil {
		return nil, err
	}
	return sd, nil
}

// withFile opens path and runs fn on it, turning a panic inside into
// ErrCorrupt and adding the file name to every error.
func withFile(path string, fn func(r io.ReaderAt, size int64) error) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("load %s: %w: %w: %v", path, ErrCorrupt, errPanic, r)
		}
	}()
	if err := fn(f, st.Size()); err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	return nil
}

// errPanic marks an error made from a recovered panic (a case the checks
// before it did not catch); tests look for it.
var errPanic = errors.New("recovered panic")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}
