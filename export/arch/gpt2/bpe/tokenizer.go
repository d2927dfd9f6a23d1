package bpe

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
	tiktoken "github.com/pkoukk/tiktoken-go"
	"github.com/pkoukk/tiktoken-go-loader/assets"
)

// EndOfText is the text of GPT-2's only special token.
const EndOfText = "<|endoftext|>"

const (
	name   = "gpt2"
	nVocab = 50257
	eot    = 50256

	// pattern is tiktoken's r50k_base / gpt2 pre-tokenisation regex. The
	// negative lookahead needs regexp2 (tiktoken-go compiles it with
	// regexp2.None, whose \s is Unicode White_Space as in tiktoken's Rust
	// core).
	pattern = `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

	ranksFile   = "r50k_base.tiktoken"
	ranksSHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
)

// The errors are the tokenizer package's, so callers branch on them
// whichever tokenizer a model has.
var (
	ErrInvalidToken      = tokenizer.ErrInvalidToken
	ErrDisallowedSpecial = tokenizer.ErrDisallowedSpecial
	ErrTokenOutOfRange   = tokenizer.ErrTokenOutOfRange
)

// Tokenizer is the GPT-2 tokenizer. It is safe for concurrent use.
type Tokenizer struct {
	tk *tiktoken.Tiktoken
}

var (
	gpt2Once sync.Once
	gpt2Tok  *Tokenizer
	gpt2Err  error
)

// GPT2 returns the GPT-2 tokenizer. The first call parses the embedded BPE
// ranks (tens of milliseconds); later calls return the same value.
func GPT2() (*Tokenizer, error) {
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = load() })
	return gpt2Tok, gpt2Err
}

func load() (*Tokenizer, error) {
	raw, err := assets.Assets.ReadFile(ranksFile)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: read embedded %s: %w", ranksFile, err)
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != ranksSHA256 {
		return nil, fmt.Errorf("tokenizer: embedded %s has sha256 %x, want %s", ranksFile, sum, ranksSHA256)
	}
	ranks, err := parseRanks(raw)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: parse %s: %w", ranksFile, err)
	}
	special := map[string]int{EndOfText: eot}
	bpe, err := tiktoken.NewCoreBPE(ranks, special, pattern)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: build bpe: %w", err)
	}
	enc := &tiktoken.Encoding{
		Name:           name,
		PatStr:         pattern,
		MergeableRanks: ranks,
		SpecialTokens:  special,
		ExplicitNVocab: nVocab,
	}
	return &Tokenizer{tk: tiktoken.NewTiktoken(bpe, enc, map[string]any{EndOfText: true})}, nil
}

// parseRanks reads a .tiktoken file ("<base64 bytes> <rank>" per line) and
// checks that the ranks are exactly 0..eot-1.
func parseRanks(raw []byte) (map[string]int, error) {
	ranks := make(map[string]int, eot)
	seen := make([]bool, eot)
	for n, line := range bytes.Split(raw, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		tok, rank, ok := strings.Cut(string(line), " ")
		if !ok {
			return nil, fmt.Errorf("line %d: no rank", n+1)
		}
		b, err := base64.StdEncoding.DecodeString(tok)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		r, err := strconv.Atoi(rank)
		if err != nil || r < 0 || r >= eot || seen[r] {
			return nil, fmt.Errorf("line %d: bad or repeated rank %q", n+1, rank)
		}
		seen[r] = true
		ranks[string(b)] = r
	}
	if len(ranks) != eot {
		return nil, fmt.Errorf("%d distinct tokens, want %d", len(ranks), eot)
	}
	return ranks, nil
}

// Name is the tiktoken encoding name, "gpt2" (TDB checks it by name).
func (t *Tokenizer) Name() string { return name }

// NVocab is the vocabulary size including the special token, 50257.
func (t *Tokenizer) NVocab() int { return nVocab }

// EOT is the id of <|endoftext|>, 50256.
func (t *Tokenizer) EOT() int { return eot }

// Encode is TDB's ModelContext.encode: tiktoken's encode with
// allowed_special={"<|endoftext|>"}, so the literal text <|endoftext|>
// becomes id 50256. No BOS/EOS is added. Like any Go string handling, bytes
// that are not valid UTF-8 are read as U+FFFD, one per bad byte.
func (t *Tokenizer) Encode(s string) []int {
	// EOT is the only special token, so this is tiktoken's special-token
	// split done with strings.Cut: ordinary text between literal EOTs. It
	// keeps long texts with many EOTs linear (tiktoken-go re-slices the
	// whole remaining text at each special token).
	ids := []int{}
	for {
		before, after, found := strings.Cut(s, EndOfText)
		ids = append(ids, t.tk.EncodeOrdinary(before)...)
		if !found {
			return ids
		}
		ids = append(ids, eot)
		s = after
	}
}

// EncodeOrdinary is the encode that Transformer.sample uses on string
// prompts: tiktoken's encode with its defaults, which refuses text
// containing a special token's text. Such text gives ErrDisallowedSpecial.
// (Note: unlike tiktoken's encode_ordinary, it does not encode the special
// token's text as plain text.)
func (t *Tokenizer) EncodeOrdinary(s string) ([]int, error) {
	if i := strings.Index(s, EndOfText); i >= 0 {
		return nil, fmt.Errorf("tokenizer: encode: %w %q at byte %d", ErrDisallowedSpecial, EndOfText, i)
	}
	return t.tk.EncodeOrdinary(s), nil
}

func checkRange(ids []int) error {
	for i, id := range ids {
		if id < 0 || id >= nVocab {
			return fmt.Errorf("tokenizer: decode: id %d at index %d: %w [0, %d)", id, i, ErrTokenOutOfRange, nVocab)
		}
	}
	return nil
}

// Decode joins the tokens' bytes and decodes them as UTF-8 the way Python's
// bytes.decode("utf-8", errors="replace") does (tiktoken's default): each
// maximal ill-formed subsequence becomes one U+FFFD. An id outside
// [0, NVocab) gives ErrTokenOutOfRange.
func (t *Tokenizer) Decode(ids []int) (string, error) {
	if err := checkRange(ids); err != nil {
		return "", err
	}
	return tokenizer.ReplaceInvalidUTF8(t.tk.Decode(ids)), nil
}

// DecodeToken is Decode([]int{id}) (TDB's decode_token): a token holding
// part of a UTF-8 sequence decodes to U+FFFD.
func (t *Tokenizer) DecodeToken(id int) (string, error) {
	return t.Decode([]int{id})
}

// DecodeTokens decodes each id on its own (TDB's decode_token_list).
func (t *Tokenizer) DecodeTokens(ids []int) ([]string, error) {
	if err := checkRange(ids); err != nil {
		return nil, err
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = tokenizer.ReplaceInvalidUTF8(t.tk.Decode([]int{id}))
	}
	return out, nil
}

// EncodeSingleToken returns the id of s, which must Encode to exactly one
// token (TDB's encode_token_str); otherwise it returns ErrInvalidToken.
// "<|endoftext|>" is the single token 50256.
func (t *Tokenizer) EncodeSingleToken(s string) (int, error) {
	ids := t.Encode(s)
	if len(ids) != 1 {
		return 0, fmt.Errorf("tokenizer: %w: %q is %d tokens, not 1", ErrInvalidToken, s, len(ids))
	}
	return ids[0], nil
}

// EncodeSingleTokens applies EncodeSingleToken to each string (TDB's
// encode_token_str_list).
func (t *Tokenizer) EncodeSingleTokens(ss []string) ([]int, error) {
	out := make([]int, len(ss))
	for i, s := range ss {
		ids := t.Encode(s)
		if len(ids) != 1 {
			return nil, fmt.Errorf("tokenizer: string %d: %w: %q is %d tokens, not 1", i, ErrInvalidToken, s, len(ids))
		}
		out[i] = ids[0]
	}
	return out, nil
}
