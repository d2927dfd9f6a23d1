package export

import (
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// The import tests name the gpt2 tokenizer; its plugin imports this package,
// so they register a stand-in with its vocabulary size.
func init() {
	tokenizer.Register("gpt2", func(string) (tokenizer.Tokenizer, error) { return vocabOnly(50257), nil })
}

// vocabOnly is a tokenizer that knows only its vocabulary size.
type vocabOnly int

func (v vocabOnly) Name() string                               { return "stand-in" }
func (v vocabOnly) NVocab() int                                { return int(v) }
func (v vocabOnly) EOT() int                                   { return int(v) - 1 }
func (v vocabOnly) Encode(string) []int                        { return nil }
func (v vocabOnly) EncodeOrdinary(string) ([]int, error)       { return nil, nil }
func (v vocabOnly) Decode([]int) (string, error)               { return "", nil }
func (v vocabOnly) DecodeToken(int) (string, error)            { return "", nil }
func (v vocabOnly) DecodeTokens([]int) ([]string, error)       { return nil, nil }
func (v vocabOnly) EncodeSingleToken(string) (int, error)      { return 0, nil }
func (v vocabOnly) EncodeSingleTokens([]string) ([]int, error) { return nil, nil }
