package harvest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"

	"github.com/onnx-tdb/onnx-tdb/harvest/corpus"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// textTokenizer is the one place the harvest reaches the tokenizer of a
// model: nil when the model has none (then the corpus must be token ids).
func textTokenizer(m *modelctx.Transformer) (tokenizer.Tokenizer, error) {
	if m.Manifest().Tokenizer == "" {
		return nil, nil
	}
	return m.Tokenizer()
}

// asCorpusTokenizer keeps a nil tokenizer a nil interface.
func asCorpusTokenizer(t tokenizer.Tokenizer) corpus.Tokenizer {
	if t == nil {
		return nil
	}
	return t
}

// vocabulary decodes every token id on its own (TDB's decode_token_list:
// each maximal ill-formed UTF-8 subsequence becomes one U+FFFD); without a
// tokenizer a token's string is its id.
func vocabulary(t tokenizer.Tokenizer) func(int32) string {
	if t == nil {
		return func(id int32) string { return strconv.Itoa(int(id)) }
	}
	cache := map[int32]string{}
	return func(id int32) string {
		if s, ok := cache[id]; ok {
			return s
		}
		ss, err := t.DecodeTokens([]int{int(id)})
		s := strconv.Itoa(int(id))
		if err == nil {
			s = ss[0]
		}
		cache[id] = s
		return s
	}
}

func tokensHash(v []int32) string {
	sum := sha256.Sum256(encodeInt32s(v))
	return hex.EncodeToString(sum[:])
}

// jsonUnmarshal decodes strictly: unknown fields are errors.
func jsonUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
