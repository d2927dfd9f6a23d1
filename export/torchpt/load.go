package torchpt

import (
	"io"
	"math/big"
	"strconv"

	"github.com/nlpodyssey/gopickle/types"
)

func loadTensor(r io.ReaderAt, size int64, want []int) (*Tensor, error) {
	root, _, err := openFile(r, size)
	if err != nil {
		return nil, err
	}
	t, ok := root.(*tensorRef)
	if !ok {
		return nil, unsupportedf("top-level object is %s, not a tensor", kindOf(root))
	}
	return t.materialize(want, nil)
}

func loadStateDict(r io.ReaderAt, size int64) (*StateDict, error) {
	root, held, err := openFile(r, size)
	if err != nil {
		return nil, err
	}
	entries, ok := dictEntries(root)
	if !ok {
		return nil, unsupportedf("top-level object is %s, not a dict", kindOf(root))
	}
	c := newConverter(held)
	sd := &StateDict{Tensors: map[string]*Tensor{}, Values: map[string]any{}}
	for _, e := range entries {
		key, ok := e.Key.(string)
		if !ok {
			return nil, unsupportedf("state dict key is %s, not a str", kindOf(e.Key))
		}
		if _, seen := sd.Tensors[key]; !seen {
			if _, seen := sd.Values[key]; !seen {
				sd.Keys = append(sd.Keys, key)
			}
		}
		delete(sd.Tensors, key) // a repeated key keeps its first place and its last value
		delete(sd.Values, key)
		if tr, ok := e.Value.(*tensorRef); ok {
			t, err := c.tensor(tr)
			if err != nil {
				return nil, err
			}
			sd.Tensors[key] = t
			continue
		}
		v, err := c.value(e.Value, 0)
		if err != nil {
			return nil, err
		}
		sd.Values[key] = v
	}
	return sd, nil
}

// dictEntries lists the items of an unpickled dict or OrderedDict in order.
func dictEntries(v any) ([]types.DictEntry, bool) {
	switch d := v.(type) {
	case *types.Dict:
		return *d, true
	case *types.OrderedDict:
		out := make([]types.DictEntry, 0, d.Len())
		for e := d.List.Front(); e != nil; e = e.Next() {
			oe := e.Value.(*types.OrderedDictEntry)
			out = append(out, types.DictEntry{Key: oe.Key, Value: oe.Value})
		}
		return out, true
	}
	return nil, false
}

// converter turns unpickled values into plain Go values. A pickle can make
// cyclic or exponentially shared structures in a few bytes, so depth and the
// number of values visited are bounded.
type converter struct {
	budget  int
	tensors map[*tensorRef]*Tensor
	bytes   loadBudget
}

const (
	maxValueDepth = 64
	maxValues     = 1 << 20
)

// newConverter serves a file that holds held bytes. Its tensors may read at
// most 4 times that from their storages (tied weights read one storage
// twice), plus one broadcast view's worth.
func newConverter(held int64) *converter {
	return &converter{budget: maxValues, tensors: map[*tensorRef]*Tensor{},
		bytes: loadBudget{left: 4*held + maxExpandedBytes}}
}

func (c *converter) tensor(tr *tensorRef) (*Tensor, error) {
	if t := c.tensors[tr]; t != nil {
		return t, nil
	}
	t, err := tr.materialize(nil, &c.bytes)
	if err != nil {
		return nil, err
	}
	c.tensors[tr] = t
	return t, nil
}

func (c *converter) value(v any, depth int) (any, error) {
	c.budget--
	if c.budget < 0 || depth > maxValueDepth {
		return nil, unsupportedf("value nested deeper than %d or with more than %d parts", maxValueDepth, maxValues)
	}
	switch x := v.(type) {
	case nil, string, bool, float64, []byte:
		return x, nil
	case int:
		return int64(x), nil
	case *big.Int:
		if !x.IsInt64() {
			return nil, unsupportedf("integer %s does not fit int64", x)
		}
		return x.Int64(), nil
	case *tensorRef:
		return c.tensor(x)
	case *types.Tuple:
		return c.list(*x, depth)
	case *types.List:
		return c.list(*x, depth)
	case *types.Dict, *types.OrderedDict:
		entries, _ := dictEntries(x)
		m := make(map[string]any, len(entries))
		for _, e := range entries {
			var key string
			switch k := e.Key.(type) {
			case string:
				key = k
			case int:
				key = strconv.Itoa(k)
			default:
				return nil, unsupportedf("dict key is %s", kindOf(e.Key))
			}
			val, err := c.value(e.Value, depth+1)
			if err != nil {
				return nil, err
			}
			m[key] = val
		}
		return m, nil
	}
	return nil, unsupportedf("value of kind %s", kindOf(v))
}

func (c *converter) list(items []any, depth int) ([]any, error) {
	out := make([]any, len(items))
	for i, it := range items {
		v, err := c.value(it, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}
