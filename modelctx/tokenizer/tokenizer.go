package tokenizer

import (
	"errors"
	"fmt"
	"sync"
)

// Errors implementations return.
var (
	// ErrInvalidToken is returned when a string that must be exactly one
	// token is not (TDB's InvalidTokenException).
	ErrInvalidToken = errors.New("invalid token")
	// ErrDisallowedSpecial is returned when text given to EncodeOrdinary
	// contains the text of a special token.
	ErrDisallowedSpecial = errors.New("disallowed special token")
	// ErrTokenOutOfRange is returned for an id outside [0, NVocab).
	ErrTokenOutOfRange = errors.New("token id out of range")
)

// Tokenizer turns text into token ids and back. Implementations are safe
// for concurrent use.
type Tokenizer interface {
	// Name names the encoding (what the manifest records).
	Name() string
	// NVocab is the vocabulary size, special tokens included.
	NVocab() int
	// EOT is the id of the end-of-text token, or -1 when there is none.
	EOT() int
	// Encode encodes text, reading the literal text of special tokens as
	// those tokens. No BOS is added.
	Encode(s string) []int
	// EncodeOrdinary encodes a prompt; text holding a special token's text
	// gives ErrDisallowedSpecial.
	EncodeOrdinary(s string) ([]int, error)
	// Decode joins the tokens' bytes and decodes them as UTF-8, each maximal
	// ill-formed subsequence replaced by one U+FFFD.
	Decode(ids []int) (string, error)
	// DecodeToken decodes one token on its own.
	DecodeToken(id int) (string, error)
	// DecodeTokens decodes each id on its own.
	DecodeTokens(ids []int) ([]string, error)
	// EncodeSingleToken returns the id of s, which must be one token
	// (ErrInvalidToken otherwise).
	EncodeSingleToken(s string) (int, error)
	// EncodeSingleTokens applies EncodeSingleToken to each string.
	EncodeSingleTokens(ss []string) ([]int, error)
}

// ErrUnknown is returned for a tokenizer name no package registered.
var ErrUnknown = errors.New("unknown tokenizer")

var registry = struct {
	sync.RWMutex
	open map[string]func(dir string) (Tokenizer, error)
}{open: map[string]func(string) (Tokenizer, error){}}

// Register makes a tokenizer available by name to the manifests that name
// it; open receives the exported model's folder (for tokenizers that read
// files of their own). Architecture plugins register theirs in init.
func Register(name string, open func(dir string) (Tokenizer, error)) {
	registry.Lock()
	defer registry.Unlock()
	registry.open[name] = open
}

// Open returns the tokenizer registered under name for a model folder.
func Open(name, dir string) (Tokenizer, error) {
	registry.RLock()
	open, ok := registry.open[name]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (its plugin package is not linked into this program)", ErrUnknown, name)
	}
	return open(dir)
}
