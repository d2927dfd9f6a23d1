package hfbpe

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dlclark/regexp2"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// Name is the tokenizer name manifests record; FileName is the file it is
// read from in an exported model's folder.
const (
	Name     = "hf-bpe"
	FileName = "tokenizer.json"
)

// Errors of Parse.
var (
	// ErrFormat marks a tokenizer.json that is malformed or inconsistent.
	ErrFormat = errors.New("malformed tokenizer.json")
	// ErrUnsupported marks a valid tokenizer.json of a kind this package
	// does not implement (another model type, a normalizer, ...).
	ErrUnsupported = errors.New("unsupported tokenizer.json")
)

// Limits on untrusted input.
const (
	MaxFileBytes   = 256 << 20
	MaxVocab       = 1 << 22
	MaxTokenBytes  = 4096
	MaxAddedTokens = 1 << 16
	MaxPattern     = 4096
	// matchTimeout bounds one regular-expression match (backtracking
	// patterns can be slow on hostile input).
	matchTimeout = 2 * time.Second
)

// byteLevelPattern is the split ByteLevel applies when use_regex is set
// (the original byte-level BPE's).
const byteLevelPattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

func init() {
	tokenizer.Register(Name, func(dir string) (tokenizer.Tokenizer, error) {
		return Load(filepath.Join(dir, FileName))
	})
}

type fileJSON struct {
	AddedTokens  []addedJSON     `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        struct {
		Type         string           `json:"type"`
		Vocab        map[string]int64 `json:"vocab"`
		Merges       json.RawMessage  `json:"merges"`
		IgnoreMerges bool             `json:"ignore_merges"`
		UnkToken     *string          `json:"unk_token"`
		ByteFallback bool             `json:"byte_fallback"`
		Prefix       *string          `json:"continuing_subword_prefix"`
		Suffix       *string          `json:"end_of_word_suffix"`
	} `json:"model"`
}

type addedJSON struct {
	ID      int64  `json:"id"`
	Content string `json:"content"`
	Special bool   `json:"special"`
}

type preJSON struct {
	Type          string          `json:"type"`
	Pretokenizers []preJSON       `json:"pretokenizers"`
	Pattern       json.RawMessage `json:"pattern"`
	Behavior      string          `json:"behavior"`
	Invert        bool            `json:"invert"`
	AddPrefix     bool            `json:"add_prefix_space"`
	UseRegex      *bool           `json:"use_regex"`
}

// Load reads and parses a tokenizer.json file.
func Load(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open tokenizer: %w", err)
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes (limit %d)", ErrFormat, path, st.Size(), MaxFileBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open tokenizer: %w", err)
	}
	t, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse reads a tokenizer.json.
func Parse(b []byte) (*Tokenizer, error) {
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrFormat, len(b), MaxFileBytes)
	}
	var f fileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	m := f.Model
	switch {
	case m.Type != "BPE":
		return nil, fmt.Errorf("%w: model type %q (only BPE)", ErrUnsupported, m.Type)
	case m.ByteFallback:
		return nil, fmt.Errorf("%w: byte_fallback (a sentencepiece-style BPE, not byte-level)", ErrUnsupported)
	case m.Prefix != nil && *m.Prefix != "" || m.Suffix != nil && *m.Suffix != "":
		return nil, fmt.Errorf("%w: continuing_subword_prefix / end_of_word_suffix", ErrUnsupported)
	case !isNull(f.Normalizer):
		return nil, fmt.Errorf("%w: a normalizer (byte-level BPE has none)", ErrUnsupported)
	case len(m.Vocab) == 0:
		return nil, fmt.Errorf("%w: empty vocab", ErrFormat)
	case len(m.Vocab) > MaxVocab:
		return nil, fmt.Errorf("%w: %d vocab entries (limit %d)", ErrFormat, len(m.Vocab), MaxVocab)
	case len(f.AddedTokens) > MaxAddedTokens:
		return nil, fmt.Errorf("%w: %d added tokens (limit %d)", ErrFormat, len(f.AddedTokens), MaxAddedTokens)
	}
	t := &Tokenizer{vocab: make(map[string]int, len(m.Vocab)), ignoreMerges: m.IgnoreMerges, unk: -1, eot: -1}
	if err := t.setVocab(m.Vocab, f.AddedTokens); err != nil {
		return nil, err
	}
	if m.UnkToken != nil {
		if id, ok := t.vocab[*m.UnkToken]; ok {
			t.unk = id
		}
	}
	if err := t.setMerges(m.Merges); err != nil {
		return nil, err
	}
	if err := t.setPreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	t.cache = map[string][]int{}
	return t, nil
}

func isNull(m json.RawMessage) bool {
	s := strings.TrimSpace(string(m))
	return s == "" || s == "null"
}

// eotNames are the end-of-text tokens EOT looks for, in order.
var eotNames = []string{"<|end_of_text|>", "<|endoftext|>", "</s>"}

func (t *Tokenizer) setVocab(vocab map[string]int64, added []addedJSON) error {
	maxID := int64(-1)
	check := func(tok string, id int64) error {
		if id < 0 || id >= MaxVocab {
			return fmt.Errorf("%w: token %.40q has id %d, want [0,%d)", ErrFormat, tok, id, MaxVocab)
		}
		if len(tok) == 0 || len(tok) > MaxTokenBytes {
			return fmt.Errorf("%w: a token of %d bytes (want 1..%d)", ErrFormat, len(tok), MaxTokenBytes)
		}
		if id > maxID {
			maxID = id
		}
		return nil
	}
	for tok, id := range vocab {
		if err := check(tok, id); err != nil {
			return err
		}
		t.vocab[tok] = int(id)
	}
	for _, a := range added {
		if err := check(a.Content, a.ID); err != nil {
			return err
		}
		t.added = append(t.added, addedToken{id: int(a.ID), content: a.Content, special: a.Special})
	}
	// Longest first, so that matching takes the longest added token.
	sort.SliceStable(t.added, func(i, j int) bool { return len(t.added[i].content) > len(t.added[j].content) })
	t.nVocab = int(maxID) + 1
	t.decode = make([]string, t.nVocab)
	t.isAdded = make([]bool, t.nVocab)
	for tok, id := range t.vocab {
		t.decode[id] = string(fromByteLevel(tok))
	}
	for _, a := range t.added {
		t.decode[a.id] = a.content
		t.isAdded[a.id] = true
	}
	for _, n := range eotNames {
		for _, a := range t.added {
			if a.content == n && t.eot < 0 {
				t.eot = a.id
			}
		}
	}
	return nil
}

func (t *Tokenizer) setMerges(raw json.RawMessage) error {
	t.ranks = map[pair]int{}
	if isNull(raw) {
		return nil
	}
	var asStrings []string
	var asPairs [][]string
	if err := json.Unmarshal(raw, &asStrings); err != nil {
		if err := json.Unmarshal(raw, &asPairs); err != nil {
			return fmt.Errorf("%w: merges are neither \"a b\" strings nor [a, b] pairs", ErrFormat)
		}
	}
	for _, s := range asStrings {
		a, b, ok := strings.Cut(s, " ")
		if !ok || strings.Contains(b, " ") {
			return fmt.Errorf("%w: merge %.40q is not two tokens", ErrFormat, s)
		}
		asPairs = append(asPairs, []string{a, b})
	}
	if len(asPairs) > MaxVocab {
		return fmt.Errorf("%w: %d merges (limit %d)", ErrFormat, len(asPairs), MaxVocab)
	}
	for rank, p := range asPairs {
		if len(p) != 2 || p[0] == "" || p[1] == "" {
			return fmt.Errorf("%w: merge %d is not two tokens", ErrFormat, rank)
		}
		k := pair{p[0], p[1]}
		if _, dup := t.ranks[k]; !dup {
			t.ranks[k] = rank
		}
	}
	return nil
}

// setPreTokenizer accepts a ByteLevel step, optionally after Split steps
// with Isolated behaviour (the layout of tokenizers converted from
// tiktoken vocabularies), or a Sequence of them.
func (t *Tokenizer) setPreTokenizer(raw json.RawMessage) error {
	if isNull(raw) {
		return fmt.Errorf("%w: no pre_tokenizer (byte-level BPE needs a ByteLevel step)", ErrUnsupported)
	}
	var p preJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("%w: pre_tokenizer: %v", ErrFormat, err)
	}
	steps := []preJSON{p}
	if p.Type == "Sequence" {
		steps = p.Pretokenizers
	}
	byteLevel := false
	for _, s := range steps {
		if byteLevel {
			return fmt.Errorf("%w: pre_tokenizer step %q after ByteLevel", ErrUnsupported, s.Type)
		}
		switch s.Type {
		case "Split":
			re, err := splitPattern(s)
			if err != nil {
				return err
			}
			t.splits = append(t.splits, re)
		case "ByteLevel":
			byteLevel = true
			t.addPrefixSpace = s.AddPrefix
			if s.UseRegex == nil || *s.UseRegex {
				t.byteRegex = compile(byteLevelPattern)
			}
		default:
			return fmt.Errorf("%w: pre_tokenizer step %q", ErrUnsupported, s.Type)
		}
	}
	if !byteLevel {
		return fmt.Errorf("%w: pre_tokenizer has no ByteLevel step", ErrUnsupported)
	}
	return nil
}

func splitPattern(s preJSON) (*regexp2.Regexp, error) {
	if s.Behavior != "Isolated" || s.Invert {
		return nil, fmt.Errorf("%w: Split behaviour %q invert=%v (only Isolated)", ErrUnsupported, s.Behavior, s.Invert)
	}
	var pat struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	}
	if err := json.Unmarshal(s.Pattern, &pat); err != nil {
		return nil, fmt.Errorf("%w: Split pattern: %v", ErrFormat, err)
	}
	var expr string
	switch {
	case pat.Regex != nil:
		expr = *pat.Regex
	case pat.String != nil:
		expr = regexp2.Escape(*pat.String)
	default:
		return nil, fmt.Errorf("%w: Split pattern has neither Regex nor String", ErrFormat)
	}
	if len(expr) == 0 || len(expr) > MaxPattern {
		return nil, fmt.Errorf("%w: Split pattern of %d bytes (want 1..%d)", ErrFormat, len(expr), MaxPattern)
	}
	re, err := regexp2.Compile(expr, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("%w: Split pattern: %v", ErrFormat, err)
	}
	re.MatchTimeout = matchTimeout
	return re, nil
}

func compile(expr string) *regexp2.Regexp {
	re := regexp2.MustCompile(expr, regexp2.None)
	re.MatchTimeout = matchTimeout
	return re
}
