package serve

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// objectWriter builds a JSON object whose large arrays are appended
// directly: encoding/json would re-scan the bytes of every Marshaler, which
// costs more than writing them for a [B, n_vocab] tensor.
type objectWriter struct {
	b []byte
}

func newObject(sizeHint int) *objectWriter {
	o := &objectWriter{b: make([]byte, 0, sizeHint)}
	o.b = append(o.b, '{')
	return o
}

func (o *objectWriter) key(name string) {
	if len(o.b) > 1 {
		o.b = append(o.b, ',')
	}
	o.b = strconv.AppendQuote(o.b, name)
	o.b = append(o.b, ':')
}

// field appends name: v, with v encoded by encoding/json.
func (o *objectWriter) field(name string, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	o.key(name)
	o.b = append(o.b, js...)
	return nil
}

// tensor appends name: {"shape": [...], "data": [...]}.
func (o *objectWriter) tensor(name string, t *tensorJSON) {
	o.key(name)
	o.b = appendTensor(o.b, t)
}

// object appends name: {key: tensor, ...} in the order of keys.
func (o *objectWriter) tensors(name string, keys []string, ts map[string]*tensorJSON) {
	o.key(name)
	inner := objectWriter{b: append(o.b, '{')}
	start := len(o.b)
	for _, k := range keys {
		if len(inner.b) > start+1 {
			inner.b = append(inner.b, ',')
		}
		inner.b = strconv.AppendQuote(inner.b, k)
		inner.b = append(inner.b, ':')
		inner.b = appendTensor(inner.b, ts[k])
	}
	o.b = append(inner.b, '}')
}

func (o *objectWriter) write(w http.ResponseWriter, status int) {
	o.b = append(o.b, '}', '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(o.b)))
	w.WriteHeader(status)
	_, _ = w.Write(o.b) // a failed write means the client is gone
}

func appendTensor(b []byte, t *tensorJSON) []byte {
	b = append(b, `{"shape":[`...)
	for i, d := range t.Shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(d), 10)
	}
	b = append(b, `],"data":`...)
	b = appendFloats(b, t.Data)
	return append(b, '}')
}
