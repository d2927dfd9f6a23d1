package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// npyType is the media type of .npy answers.
const npyType = "application/x-npy"

// tensorJSON is an array in the API: its shape and its values flat in C
// order. Non-finite values (the -inf of masked attn.qk_logits) are written
// as null, since JSON has no infinities; .npy answers keep them.
type tensorJSON struct {
	Shape []int     `json:"shape"`
	Data  []float32 `json:"data"`
}

func tensorOf(t *hooks.Tensor) *tensorJSON { return &tensorJSON{Shape: t.Shape, Data: t.Data} }

// MarshalJSON writes the values with the shortest float32 form.
func (t *tensorJSON) MarshalJSON() ([]byte, error) {
	return appendTensor(make([]byte, 0, 16+12*len(t.Data)), t), nil
}

// UnmarshalJSON reads what MarshalJSON writes (null as NaN).
func (t *tensorJSON) UnmarshalJSON(data []byte) error {
	var raw struct {
		Shape []int      `json:"shape"`
		Data  []*float32 `json:"data"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	t.Shape = raw.Shape
	t.Data = make([]float32, len(raw.Data))
	for i, p := range raw.Data {
		if p == nil {
			t.Data[i] = float32(math.NaN())
		} else {
			t.Data[i] = *p
		}
	}
	return nil
}

// parallelFloats is the array length from which appendFloats splits the
// work across cores: writing the shortest form of 50257 logits costs more
// than a small forward pass.
const parallelFloats = 1 << 14

// appendFloats appends v as a JSON array (non-finite values as null).
func appendFloats(b []byte, v []float32) []byte {
	b = append(b, '[')
	n := goruntime.GOMAXPROCS(0)
	if len(v) < parallelFloats || n < 2 {
		b = appendFloatRun(b, v)
		return append(b, ']')
	}
	chunk := (len(v) + n - 1) / n
	parts := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range parts {
		lo, hi := i*chunk, min((i+1)*chunk, len(v))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i] = appendFloatRun(make([]byte, 0, 12*(hi-lo)), v[lo:hi])
		}()
	}
	wg.Wait()
	for i, p := range parts {
		if len(p) == 0 {
			continue
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p...)
	}
	return append(b, ']')
}

// appendFloatRun appends v's values separated by commas.
func appendFloatRun(b []byte, v []float32) []byte {
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		f := float64(x)
		if math.IsInf(f, 0) || math.IsNaN(f) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, f, 'g', -1, 32)
	}
	return b
}

// wantsNPY reports whether the client asks for .npy bytes.
func wantsNPY(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(mt), npyType) {
			return true
		}
	}
	return false
}

// writeNPY answers one tensor as .npy bytes.
func writeNPY(w http.ResponseWriter, t *hooks.Tensor) error {
	var b bytes.Buffer
	if err := npy.WriteTo(&b, t.Shape, t.Data); err != nil {
		return fmt.Errorf("encoding .npy: %w", err)
	}
	w.Header().Set("Content-Type", npyType)
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes()) // a failed write means the client is gone
	return nil
}

// singleTensor is the one tensor of an answer asked for as .npy; it is a
// 406 when the answer holds several.
func singleTensor(ts map[string]*hooks.Tensor) (*hooks.Tensor, error) {
	if len(ts) != 1 {
		names := make([]string, 0, len(ts))
		for k := range ts {
			names = append(names, k)
		}
		return nil, errorf(http.StatusNotAcceptable, "%s holds one array; this answer has %d (%s): ask for one point, or for JSON", npyType, len(ts), strings.Join(names, ", "))
	}
	for _, t := range ts {
		return t, nil
	}
	return nil, errors.New("unreachable")
}
